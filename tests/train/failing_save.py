"""Driven by test_train_checkpoint.py: an async save whose directory cannot be created (disk full).

    python tests/train/failing_save.py DIR

Saves step 1, then makes every directory creation fail with ENOSPC and saves
step 2. Prints ``RAISED <message>`` when the failure comes back as a
CheckpointError (from ``save`` or ``wait``) and ``EXIT``, then returns: the
test times the whole process, since a background thread left waiting for a
directory that will never exist keeps the interpreter from exiting.
"""

import errno
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax.numpy as jnp  # noqa: E402
from orbax.checkpoint._src.path import atomicity  # noqa: E402

from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer, CheckpointError  # noqa: E402
from jaxlab.train.step import TrainState  # noqa: E402


async def _disk_full(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(self.get()))


def main() -> None:
    state = TrainState({"w": jnp.arange(16.0).reshape(4, 4)}, {"m": jnp.zeros((4, 4))})
    ck = Checkpointer(Path(sys.argv[1]), CheckpointConfig(every_steps=1, keep=2, async_save=True))
    ck.save(1, state, {}, data_state={"i": 1})
    ck.wait()
    for cls in (atomicity.AtomicRenameTemporaryPath, atomicity.CommitFileTemporaryPath):
        cls.create = _disk_full
    try:
        ck.save(2, state, {}, data_state={"i": 2})
        ck.wait()
        print("NO ERROR", flush=True)
    except CheckpointError as exc:
        print(f"RAISED {exc}", flush=True)
    ck.close()
    print(f"EXIT steps={ck.all_steps()}", flush=True)


if __name__ == "__main__":
    main()
