"""Imported first by the fork server, before torch: turns the cyclic garbage collector off there.

Importing torch creates hundreds of thousands of objects that live as long as the process, and the
collector keeps walking them while the import runs: 0.1-0.2 s of the fork server's start-up,
measured as `import torch` with and without `gc.disable()`. The fork server only forks, so it
never needs the collector; each worker turns it back on (see `worker_process.run_child`).
"""

import gc

gc.disable()
