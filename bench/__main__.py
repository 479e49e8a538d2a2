"""Run the benchmark: ``python -m bench [--quick] [--kubeconfig FILE]``; prints a table and writes JSON."""

from bench.run import main

main()
