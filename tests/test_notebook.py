"""The example notebook runs top to bottom in a fresh kernel (its own Spark, temp warehouse)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    pytest.importorskip("mplfinance")

    monkeypatch.setenv("ROLLUP_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    def text(cell: object) -> str:
        parts = []
        for out in cell.outputs:  # type: ignore[attr-defined]
            parts.append(out.get("text", ""))
            parts.append(str(out.get("data", {}).get("text/plain", "")))
        return "".join(parts)

    code = [c for c in notebook.cells if c.cell_type == "code"]
    everything = "\n".join(text(c) for c in code)
    assert f"warehouse: {tmp_path / 'warehouse'}" in everything
    assert "ingested 20000, quarantined 0" in everything
    assert "1d: wrote 3 bars" in everything and "1d: up-to-date" in everything
    assert "1d through the cascade == 1d straight from the trades: 3 bars" in everything
    assert "minutes had no trades" in everything
    images = [out for c in code for out in c.outputs if "image/png" in out.get("data", {})]
    assert len(images) == 1  # the candlestick chart, shown once
    assert (tmp_path / "warehouse" / "market_data" / "bars_1d" / "metadata").is_dir()
