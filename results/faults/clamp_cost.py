"""Yosys cost of the range-clamp mitigation (results/faults/range_clamp_axis.sv), for
results/faults/README.md. Native Yosys (`make yosys`), synth_xilinx -family xcup, via
hls/synth.py's run_yosys. ROM contents: the validation ranges of a layer (clamp_ranges.json).

    .venv/bin/python results/faults/clamp_cost.py   # -> results/faults/clamp_cost.json
"""
import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
spec = importlib.util.spec_from_file_location("synth", ROOT / "hls" / "synth.py")
synth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(synth)
ranges = json.loads((HERE / "clamp_ranges.json").read_text())["ranges"]

# lanes (values per cycle) at each layer output of the KV260 1080p30 plan (results/plan/
# kv260_1920x1080_{encoder,decoder}.md, N=32: PE of convs, PE x replicas of GDNs), the
# instances a clamp after every layer needs
PLAN_LANES = {"encoder": {"g_a.0": 8, "g_a.1": 32 * 3, "g_a.2": 16, "g_a.3": 32, "g_a.4": 4, "g_a.5": 8, "g_a.6": 3,
                          "h_a.0": 1, "h_a.2": 1, "h_a.4": 1, "h_s.0": 1, "h_s.2": 1, "h_s.4": 1},
              "decoder": {"h_s.0": 1, "h_s.2": 1, "h_s.4": 1, "g_s.0": 1, "g_s.1": 8, "g_s.2": 2, "g_s.3": 32,
                          "g_s.4": 8, "g_s.5": 32 * 3, "g_s.6": 1}}
LUT_TOTAL = {"encoder": 70432, "decoder": 69561}     # results/finn/kv260_1080p30.md (FINN estimates)


def one(c, pe, layer="g_a.5", signed=1):
    lo, hi = ranges[layer]
    lo, hi = (lo * 2)[:c], (hi * 2)[:c]

    def words(v):
        return [("".join(f"{x & 0xFF:02x}" for x in reversed(v[g * pe:(g + 1) * pe]))) for g in range(c // pe)]

    def setup(tmp):
        (tmp / "lo.mem").write_text("\n".join(words(lo)) + "\n")
        (tmp / "hi.mem").write_text("\n".join(words(hi)) + "\n")

    r = synth.run_yosys([HERE / "range_clamp_axis.sv"], "range_clamp_axis",
                        {"C": c, "PE": pe, "SIGNED": signed, "LO_FILE": "lo.mem", "HI_FILE": "hi.mem"}, setup)
    r.pop("cells")
    return r


if __name__ == "__main__":
    out = {"configs": {}}
    for c, pe in ((30, 1), (30, 6), (32, 8), (32, 32)):
        out["configs"][f"C={c} PE={pe}"] = one(c, pe)
        print(c, pe, out["configs"][f"C={c} PE={pe}"], flush=True)
    import numpy as np
    pes = np.array([int(k.split("PE=")[1]) for k in out["configs"]], dtype=float)
    luts = np.array([v["LUT"] for v in out["configs"].values()], dtype=float)
    ffs = np.array([v["FF"] for v in out["configs"].values()], dtype=float)
    b, a = np.polyfit(pes, luts, 1)                  # LUT ~ a + b * PE (per instance)
    fb, fa = np.polyfit(pes, ffs, 1)
    out["fit"] = {"LUT_per_instance": a, "LUT_per_lane": b, "FF_per_instance": fa, "FF_per_lane": fb}
    for side, lanes in PLAN_LANES.items():
        lut = sum(a + b * n for n in lanes.values())
        ff = sum(fa + fb * n for n in lanes.values())
        out[side] = {"instances": len(lanes), "lanes": sum(lanes.values()), "LUT_est": round(lut), "FF_est": round(ff),
                     "LUT_total_est": LUT_TOTAL[side], "LUT_share": lut / LUT_TOTAL[side]}
    (HERE / "clamp_cost.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
