"""MkDocs hook: the benchmark's plots join the site where they are, without a copy under docs/ (I/O: reads files).

`python -m bench --compare reloader --sweep ...` writes its plot to bench/results/, next to the JSON it
is drawn from. MkDocs only publishes what is under docs/, and a copy there would be a second source
that the next sweep leaves stale; so mkdocs.yml names this hook, which adds every plot of
bench/results/ to the site as bench/results/<name>.png. A page links it as
``../bench/results/compare-sweep.png`` (from a page one folder deep), and the strict build fails if
the file is gone.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parent / "results"


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    """Add the plots of bench/results/ (not of its older runs' folders) to the site's files."""
    for plot in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"bench/results/{plot.name}", abs_src_path=str(plot)))
    return files
