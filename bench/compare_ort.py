"""ferrumc vs onnxruntime on the SmolLM2-135M-shaped Llama (f32, random weights), in one run.

For T = 1, 16 and 128 the full forward of the same model is timed with both, alternating
(onnxruntime on the dynamo-exported ONNX through bench/ort_baseline.py, ferrumc on its compiled
artifact through `ferrumc bench`), each in its own process so that peak resident memory is
measured per engine. Each case runs in `--rounds` rounds that alternate which engine goes first,
and a case's median is the median of its rounds' medians: on a shared machine whose speed drifts
over seconds (a VM's memory bandwidth varies by 1.5x here) this keeps one engine from being
timed in a fast minute and the other in a slow one. Then ferrumc's KV-cache decode step at
context 128 (f32 and Q8_0), in the same rounds. T=1 and the f32 decode step are also timed with
the artifact copied onto huge pages (`--huge-pages`), and every forward case also with ferrumc
compiling the very ONNX file onnxruntime runs (in the same rounds). When DIR/optimum/model.onnx
exists (`make_smollm_shape.py --optimum`), both engines also run that optimum export, the
Hub's usual ONNX decoder form, at T = 1, 16, 128 and a KV-cache decode step at context 128
(each engine on its own cache path). Prints a markdown table of medians, minimums and
ratios (ferrumc / onnxruntime), plus compile time (with the checkpoint already read once, so a
cold page cache is not counted), artifact load time (mapped, the default, and `--huge-pages`) and
peak memory.

    python bench/compare_ort.py [--model-dir DIR] [--threads 2] [--iters 20] [--warmup 3] [--rounds 3]

DIR holds `hf/` and `onnx/model.onnx` as written by bench/make_smollm_shape.py (generated there
when missing; needs torch and transformers). Needs numpy and onnxruntime; builds nothing: run
`cargo build --release -p ferrumc` first (and `--example membw` of `ferrumc-runtime` for the
memory-floor lines: how long reading the weights once takes on this machine, on 4 KiB pages
and on huge pages).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_checked(cmd):
    """Runs `cmd`, exiting with its stderr if it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def run_with_rss(cmd):
    """Runs `cmd`, returns (stdout, peak resident memory in MB of that process alone)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Read all output before reaping so large outputs cannot block the child.
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({p.returncode}):\n{err}")
    return out, usage.ru_maxrss / 1024


def ort_time(onnx, seq, args, past=0):
    out, rss = run_with_rss(
        [sys.executable, os.path.join(HERE, "ort_baseline.py"), onnx, "--threads", str(args.threads),
         "--iters", str(args.iters), "--warmup", str(args.warmup), "--seqs", str(seq), "--past", str(past)]
    )
    m = re.search(rf"^\s*{seq}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out, re.M)
    if not m:
        sys.exit(f"error: cannot parse ort_baseline output:\n{out}")
    return {"median": float(m.group(1)), "min": float(m.group(2)), "p90": float(m.group(3)), "rss": rss}


def ferrumc_time(ferrumc, artifact, inputs, args, function="forward", extra=()):
    cmd = [ferrumc, "bench", artifact, "--function", function, "--threads", str(args.threads),
           "--iters", str(args.iters), "--warmup", str(args.warmup), "--json", *extra]
    for name, path in inputs:
        cmd += ["--input", f"{name}={path}"]
    out, rss = run_with_rss(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    return {"median": r["median_ms"], "min": r["min_ms"], "p90": r["p90_ms"], "load": r["load_ms"], "rss": rss}


def combine(rounds):
    """One case from its rounds: the median of their medians (and of their load times), the
    minimum of their minimums, the largest peak memory."""
    out = dict(rounds[0])
    out["median"] = float(np.median([r["median"] for r in rounds]))
    out["min"] = min(r["min"] for r in rounds)
    out["rss"] = max(r["rss"] for r in rounds)
    if "load" in out:
        out["load"] = float(np.median([r["load"] for r in rounds]))
    return out


def optimum_cases(args, work, npy, rng):
    """Both engines on the optimum export (DIR/optimum/model.onnx, when present): forward at
    T = 1, 16, 128 with an empty cache and a KV-cache decode step at context 128, each engine
    running its own cache path on the same file. Returns (rows, ferrumc compile seconds)."""
    onnx = os.path.join(args.model_dir, "optimum", "model.onnx")
    if not os.path.exists(onnx):
        return [], None
    with open(onnx, "rb") as f:
        while f.read(1 << 24):
            pass
    artifact = os.path.join(work, "smol-optimum.ferrumc")
    bounds = ["--max-dim", "batch_size=1", "--max-dim", "sequence_length=128", "--max-dim", "past_sequence_length=128"]
    t0 = time.perf_counter()
    run_checked([args.ferrumc, "compile", onnx, f"-O{args.level}", *bounds, "-o", artifact])
    compile_s = time.perf_counter() - t0
    import onnxruntime as ort

    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    caches = [(i.name, i.shape) for i in session.get_inputs() if i.name.startswith("past_key_values")]
    del session
    rows = []
    for seq, past in ((1, 0), (16, 0), (128, 0), (1, 128)):
        inputs = [
            ("input_ids", npy(f"o_ids{seq}_{past}", rng.integers(0, 49152, size=(1, seq), dtype=np.int64))),
            ("attention_mask", npy(f"o_mask{seq}_{past}", np.ones((1, past + seq), np.int64))),
            ("position_ids", npy(f"o_pos{seq}_{past}", np.arange(past, past + seq, dtype=np.int64).reshape(1, seq))),
        ]
        for name, dims in caches:
            shape = (1, dims[1], past, dims[3])
            inputs.append((name, npy(f"o_{name}_{seq}_{past}", rng.standard_normal(shape).astype(np.float32))))
        o_runs, f_runs = [], []
        for r in range(args.rounds):
            engines = [lambda: o_runs.append(ort_time(onnx, seq, args, past)),
                       lambda: f_runs.append(ferrumc_time(args.ferrumc, artifact, inputs, args))]
            for run in engines if r % 2 == 0 else engines[::-1]:
                run()
        name = f"optimum export, both engines: T={seq}" if past == 0 else f"optimum export, both engines: decode ctx {past}"
        rows.append((name, combine(f_runs), combine(o_runs)))
    return rows, compile_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=os.path.join(tempfile.gettempdir(), "smol"))
    ap.add_argument("--ferrumc", default=os.path.join(ROOT, "target", "release", "ferrumc"))
    ap.add_argument("--level", default="3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.rounds < 1 or args.iters < 1:
        sys.exit("error: --rounds and --iters must be at least 1")

    hf = os.path.join(args.model_dir, "hf")
    onnx = os.path.join(args.model_dir, "onnx", "model.onnx")
    if not (os.path.exists(hf) and os.path.exists(onnx)):
        subprocess.run([sys.executable, os.path.join(HERE, "make_smollm_shape.py"), args.model_dir], check=True)
    work = tempfile.mkdtemp(prefix="ferrumc-bench-")
    artifacts = {}
    compile_s = {}
    # Compile time is the compiler's work, not the disk's: read the checkpoint once so that a
    # cold page cache (538 MB from this VM's disk: ~13 s) is not counted.
    for name in sorted(os.listdir(hf)):
        with open(os.path.join(hf, name), "rb") as f:
            while f.read(1 << 24):
                pass
    for label, extra in (("f32", []), ("q8_0", ["--quantize", "q8_0"])):
        path = os.path.join(work, f"smol-{label}.ferrumc")
        t0 = time.perf_counter()
        run_checked([args.ferrumc, "compile", hf, f"-O{args.level}", *extra, "-o", path])
        compile_s[label] = time.perf_counter() - t0
        artifacts[label] = path
    # The same ONNX file onnxruntime runs, compiled by ferrumc.
    path = os.path.join(work, "smol-onnx.ferrumc")
    with open(onnx, "rb") as f:
        while f.read(1 << 24):
            pass
    t0 = time.perf_counter()
    run_checked([args.ferrumc, "compile", onnx, f"-O{args.level}", "-o", path])
    compile_s["onnx"] = time.perf_counter() - t0
    artifacts["onnx"] = path

    def npy(name, array):
        path = os.path.join(work, name + ".npy")
        np.save(path, array)
        return path

    rng = np.random.default_rng(0)
    rows = []
    onnx_rows = []
    for seq in (1, 16, 128):
        ids = npy(f"ids{seq}", rng.integers(0, 49152, size=(1, seq), dtype=np.int64))
        pos = npy(f"pos{seq}", np.arange(seq, dtype=np.int64).reshape(1, seq))
        o_runs, f_runs, h_runs, x_runs = [], [], [], []
        for r in range(args.rounds):
            engines = [lambda: o_runs.append(ort_time(onnx, seq, args)),
                       lambda: f_runs.append(ferrumc_time(args.ferrumc, artifacts["f32"],
                                                          [("input_ids", ids), ("position_ids", pos)], args)),
                       lambda: x_runs.append(ferrumc_time(args.ferrumc, artifacts["onnx"], [("input_ids", ids)], args))]
            if seq == 1:
                # The same with the artifact copied onto huge pages (`--huge-pages`).
                engines.append(lambda: h_runs.append(ferrumc_time(args.ferrumc, artifacts["f32"],
                                                                  [("input_ids", ids), ("position_ids", pos)], args,
                                                                  extra=["--huge-pages"])))
            for run in engines if r % 2 == 0 else engines[::-1]:
                run()
        rows.append((f"forward T={seq}", combine(f_runs), combine(o_runs)))
        onnx_rows.append((f"forward T={seq}, ferrumc on the ONNX file", combine(x_runs), combine(o_runs)))
        if h_runs:
            huge_t1 = combine(h_runs)
    ids = npy("ids_dec", rng.integers(0, 49152, size=(1, 1), dtype=np.int64))
    pos = npy("pos_dec", np.array([[128]], dtype=np.int64))
    ort_t1 = rows[0][2]
    for label in ("f32", "q8_0"):
        runs = [ferrumc_time(args.ferrumc, artifacts[label], [("input_ids", ids), ("position_ids", pos)], args,
                             function="decode", extra=["--past", "128"]) for _ in range(args.rounds)]
        rows.append((f"decode ctx 128, {label} (vs ort f32 T=1)", combine(runs), ort_t1))
    rows.append(("forward T=1, --huge-pages", huge_t1, ort_t1))
    runs = [ferrumc_time(args.ferrumc, artifacts["f32"], [("input_ids", ids), ("position_ids", pos)], args,
                         function="decode", extra=["--past", "128", "--huge-pages"]) for _ in range(args.rounds)]
    rows.append(("decode ctx 128, f32, --huge-pages (vs ort f32 T=1)", combine(runs), ort_t1))
    rows.extend(onnx_rows)
    optimum_rows, optimum_compile = optimum_cases(args, work, npy, rng)
    rows.extend(optimum_rows)

    print(f"\n{args.threads} threads; {args.rounds} rounds of {args.iters} timed runs after {args.warmup} warm-up each; "
          f"ms (median of the rounds' medians, minimum of all runs)\n")
    print("| case | ferrumc median | ferrumc min | onnxruntime median | onnxruntime min | ratio (median) |")
    print("|---|---|---|---|---|---|")
    for name, f, o in rows:
        print(f"| {name} | {f['median']:.2f} | {f['min']:.2f} | {o['median']:.2f} | {o['min']:.2f} "
              f"| {f['median'] / o['median']:.2f}× |")
    peak_f = max(f["rss"] for _, f, _ in rows[:3])
    peak_o = max(o["rss"] for _, _, o in rows[:3])
    print(f"\ncompile -O{args.level}: f32 {compile_s['f32']:.2f} s, q8_0 {compile_s['q8_0']:.2f} s, "
          f"ONNX {compile_s['onnx']:.2f} s; "
          f"artifact load {rows[0][1]['load']:.1f} ms (mapped), {huge_t1['load']:.1f} ms (--huge-pages); "
          f"artifact sizes {os.path.getsize(artifacts['f32']) / 1e6:.0f} MB / {os.path.getsize(artifacts['q8_0']) / 1e6:.0f} MB")
    print(f"peak resident memory (forward runs): ferrumc {peak_f:.0f} MB, onnxruntime {peak_o:.0f} MB")
    if optimum_compile is None:
        print("optimum export: not measured (python bench/make_smollm_shape.py --optimum DIR, which needs "
              "optimum==2.1.0 optimum-onnx==0.1.0)")
    else:
        print(f"optimum export: compile -O{args.level} {optimum_compile:.2f} s")
    membw = os.path.join(ROOT, "target", "release", "examples", "membw")
    if os.path.exists(membw):
        # The floor of a memory-bound pass: every f32 weight read once, at this machine's
        # streaming bandwidth, on the same threads.
        mb = int(sum(os.path.getsize(os.path.join(hf, f)) for f in os.listdir(hf) if f.endswith(".safetensors")) / 1e6)
        for pages in ([], ["--huge-pages"]):
            line = run_checked([membw, "--mb", str(mb), "--threads", str(args.threads), *pages]).strip()
            m = re.search(r"median ([\d.]+) ms", line)
            floor = float(m.group(1)) if m else float("nan")
            print(f"memory floor: {line}; that is {floor / ort_t1['median']:.2f}× onnxruntime's T=1 median")
    else:
        print("memory floor: not measured (cargo build --release -p ferrumc-runtime --example membw)")
    for p in os.listdir(work):
        os.remove(os.path.join(work, p))
    os.rmdir(work)


if __name__ == "__main__":
    main()
