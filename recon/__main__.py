"""`python -m recon` (also what `torchrun ... -m recon train` runs)."""

from recon.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
