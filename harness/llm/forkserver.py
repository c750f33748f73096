"""Imported first by the forkserver that LLM worker processes fork from (harness.llm.client preloads it there),
and nowhere else: it makes the forkserver die with the run's process. Otherwise a run SIGKILLed while the
forkserver was still importing litellm left it running for the seconds that import takes, since the forkserver
notices its parent's death only between forks. Its workers die with it (harness.llm.retry.serve_worker).
Linux sends the signal when the thread that started the server ends, so clients belong on a thread that outlives
their calls (harness calls from its main thread); multiprocessing starts a new server if one has died."""
import os
import signal

from harness.llm.client import PARENT_PID_ENV
from harness.llm.local import die_with_parent

die_with_parent(signal.SIGKILL)
# A parent killed before that call (while it started this server) sends no signal: the orphan has another parent.
if os.getppid() != int(os.environ.get(PARENT_PID_ENV) or os.getppid()):
    os._exit(0)
