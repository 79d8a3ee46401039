"""Learning curves: `python -m purerl.experiments.plot RUN_DIR [RUN_DIR ...] [--out FILE.png]`
(`purerl plot ...`); see `purerl.experiments.engine.plot`."""

from purerl.experiments.engine.plot import main

if __name__ == "__main__":
    main()
