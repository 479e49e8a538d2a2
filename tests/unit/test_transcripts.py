"""tests/transcripts.py: how a page's transcript is read and matched against a real run's output."""

from __future__ import annotations

import re
from pathlib import Path

from transcripts import Shown, commands, mask, shows, transcript

TESTS = Path(__file__).resolve().parents[1]
DOCS = TESTS.parent / "docs"
PAGE = """Some words.

A real run:

```text
$ kubectl get sl -n shop            # 0.9 s after the change
NAME   READY   AGE
own    True    30s

$ servicelink leave -n shop
...
ConfigMap shop/own-config: removed
```
"""


def test_the_block_after_the_sentence_is_read_and_split_into_commands(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    assert commands(transcript(page, "A real run")) == [
        Shown("kubectl get sl -n shop", "NAME   READY   AGE\nown    True    30s\n\n"),
        Shown("servicelink leave -n shop", "...\nConfigMap shop/own-config: removed\n"),
    ]


def test_what_varies_between_runs_is_masked_and_nothing_else() -> None:
    assert mask("ready in 4.4s (logs: /tmp/servicelink-cp-rxeah_kq/logs)") == "ready in <duration> (logs: <tmp>"
    assert mask("gateway-59674478db  2  a191b442  2026-11-26T00:24:39Z") == "gateway-59674478db  2  a191b442  <time>"
    assert mask("LAST DEPLOYED: Thu Nov 26 12:05:28 2026") == "LAST DEPLOYED: <time>"
    assert mask("edge   2/2   1/2   9118ccf4   2m3s") == "edge   2/2   1/2   9118ccf4   <duration>"
    assert mask("http://auth-v3:3001 port 3005, 265MB") == "http://auth-v3:3001 port 3005, 265MB"


def test_the_matcher_takes_what_varies_and_gaps_but_no_other_difference() -> None:
    printed = "NAME   READY   AGE\nshop   True    12s\nextra\nlast   False   2m3s\n"
    assert shows("NAME READY AGE\nshop True 1s\n...\nlast False 1s", printed)
    assert not shows("NAME READY AGE\nshop False 1s", printed)
    assert not shows("shop True 1s\nlast False 1s", printed)  # not one after another
    assert not shows("last False 1s\n...\nshop True 1s", printed)  # out of order


def test_every_page_that_shows_a_real_run_is_checked_by_a_test_that_makes_one() -> None:
    claiming = {page.name for page in DOCS.rglob("*.md") if "real run" in page.read_text().lower()}
    checking = {
        page
        for test in (*TESTS.glob("integration/test_*.py"), *TESTS.glob("node/test_*.py"))
        if "transcript(" in (text := test.read_text())
        for page in re.findall(r'"([\w-]+\.md)"', text)
    }
    assert claiming - checking == set()
