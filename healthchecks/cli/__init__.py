"""The console scripts, one module each, over one common layer:

    common.py         Parser (one-line usage errors, exit 2), exit codes, number and path arguments, output
                      files written whole, plain one-line messages (standard library only)
    console.py        the rich consoles of the two table-printing scripts
    endpoint_args.py  the endpoint flags healthcheck and smoke-bench share, and their resolution
    healthcheck.py    ``healthcheck``
    smoke_bench.py    ``smoke-bench``
    gpu_report.py     ``gpu-report``
    prepare_model.py  ``prepare-model``
(``compose-preflight`` lives in :mod:`healthchecks.preflight`.) These modules are the only ones that print.

Importing this package imports nothing else (no rich, no httpx): ``prepare-model`` runs in any Python with torch.
"""
