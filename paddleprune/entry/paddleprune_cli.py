"""``paddleprune`` as a script file, for ``paddle.distributed.launch`` (which starts a ``.py``
file, not a module). It sits alone in this folder because the folder of a script is put
first on ``sys.path``: next to paddleprune's own modules it would shadow other packages."""
from paddleprune.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
