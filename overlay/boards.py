"""Board descriptions (``vivado/boards/<name>.json``) for the planner and the Vivado flow.

One JSON file per board holds everything both need: the part and board part, the PS
settings the block design applies (PL clock, which PS ports carry control and DMA traffic,
their AXI widths), the accelerator's target clock and the PL resource totals from the
device data sheets (sources listed in the file and in vivado/README.md). Keeping them in
one file means the planner's budget and the bitstream's part can never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

# The JSON files live beside the Tcl that consumes them (vivado/boards/); the package is
# installed in editable mode (see Makefile), so the repository layout is available.
BOARDS_DIR = Path(__file__).resolve().parent.parent / "vivado" / "boards"

REQUIRED = ("name", "part", "board_part", "clock_mhz", "ps", "dma", "resources")
RESOURCE_KEYS = ("LUT", "FF", "DSP", "BRAM36", "URAM")


class BoardError(ValueError):
    """Unknown board name or malformed board file."""


def list_boards(boards_dir: Path | str = BOARDS_DIR) -> list[str]:
    """Names of the available boards, sorted."""
    return sorted(p.stem for p in Path(boards_dir).glob("*.json"))


def load_board(name: str, boards_dir: Path | str = BOARDS_DIR) -> dict:
    """The board's description as a dict; BoardError with the list of boards if unknown."""
    boards = list_boards(boards_dir)
    if name not in boards:
        raise BoardError(f"unknown board {name!r}; available: {', '.join(boards)}")
    path = Path(boards_dir) / f"{name}.json"
    try:
        board = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BoardError(f"{path}: invalid JSON ({e})") from e
    missing = [k for k in REQUIRED if k not in board]
    missing += [f"resources.{k}" for k in RESOURCE_KEYS if k not in board.get("resources", {})]
    if missing:
        raise BoardError(f"{path}: missing {', '.join(missing)}")
    if board["name"] != name:
        raise BoardError(f"{path}: name {board['name']!r} does not match the file name")
    return board
