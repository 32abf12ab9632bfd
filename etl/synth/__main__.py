"""`python -m etl.synth OUT_DIR`: the synthetic inputs, without the saewh CLI."""

from etl.synth.driver import main

main()
