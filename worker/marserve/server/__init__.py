"""`marserve serve`: the HTTP front end, dynamic batching and worker processes."""
