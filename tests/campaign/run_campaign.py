#!/usr/bin/env python3
"""run_campaign.py — replays the bad-input campaign of issue 17 (tests/campaign/cases.json) against
an attnbench binary, each case in its own temporary directory, two at a time, and classifies it:
ok, wrong-exit, wrong-message, wrong-output, hang, crash, partial-file, changed-file.

usage: run_campaign.py BINARY [--cases F] [--jobs 2] [--mpirun PATH] [--only-tag T] [--skip-tag T]
                       [--ids A,B] [--list-tags] [--list TAG] [--keep DIR] [-v]
Exit 0 when every case is ok, 1 otherwise (2: bad usage). Standard library only.

A case (one JSON object): id, tags, cmd (argv words; {bin} {tmp} {mpirun} {fixtures} are replaced),
setup (generators run in {tmp} first, see GENERATORS), exit (allowed exit codes), stderr (a regex
it must match), stderr_not, stdout (regexes), one_error (exactly one "error:" line; default for exit
2 without mpirun), writes (globs, relative to {tmp}, of what may appear or change; anything else new
or changed fails the case), post (checks on the files when the exit is 0), timeout (seconds).
"""
import argparse, concurrent.futures, fnmatch, hashlib, json, os, re, shlex, shutil, signal, stat, struct
import subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")
SANITIZER = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error: |SUMMARY: UndefinedBehavior")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "detect_leaks=1"))


# ---- generators: build a case's inputs in its directory ---------------------------------------

def npy_bytes(shape, descr="<f4", fortran=False, values=None, header=None, version=b"\x01\x00", cut=None):
    """A .npy file written by hand (no NumPy needed), optionally damaged."""
    n = 1
    for s in shape:
        n *= s
    if header is None:
        dims = "".join("%d," % s for s in shape) if len(shape) == 1 else ", ".join(str(s) for s in shape)
        header = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (descr, fortran, dims)
    h = header.encode("latin-1")
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    vals = values if values is not None else [((i * 37) % 17 - 8) / 8.0 for i in range(n)]
    code = {"<f4": "<%df", "<f8": "<%dd", ">f4": ">%df", "<i4": "<%di", "<f2": None}.get(descr)
    if descr == "<i4":
        vals = [int(v * 8) for v in vals]
    body = struct.pack(code % len(vals), *vals) if code else bytes(2 * len(vals))
    raw = b"\x93NUMPY" + version + struct.pack("<H", len(h)) + h + body
    return raw[:cut] if cut is not None else raw


def gen_npy(tmp, g):
    shape = tuple(g.get("shape", [1, 2, 8, 4]))
    n = 1
    for s in shape:
        n *= s
    kind, vals, kw = g.get("kind", "good"), None, {}
    if kind in ("nan", "inf", "ninf", "huge", "overflow", "tiny"):
        vals = [((i * 37) % 17 - 8) / 8.0 for i in range(n)]
        bad = {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "huge": 1e18, "overflow": 3e38,
               "tiny": 1e-45}[kind]
        for i in g.get("at", [5]):
            vals[i] = bad
    raw = {
        "good": lambda: npy_bytes(shape, values=vals),
        "nan": lambda: npy_bytes(shape, values=vals), "inf": lambda: npy_bytes(shape, values=vals),
        "ninf": lambda: npy_bytes(shape, values=vals), "huge": lambda: npy_bytes(shape, values=vals),
        "overflow": lambda: npy_bytes(shape, values=vals),
        "tiny": lambda: npy_bytes(shape, values=vals),
        "f64": lambda: npy_bytes(shape, "<f8"),
        "int32": lambda: npy_bytes(shape, "<i4"),
        "f16": lambda: npy_bytes(shape, "<f2"),
        "bigendian": lambda: npy_bytes(shape, ">f4"),
        "fortran": lambda: npy_bytes(shape, fortran=True),
        "magic": lambda: b"\x93NUMPX" + npy_bytes(shape)[6:],
        "version9": lambda: npy_bytes(shape, version=b"\x09\x00"),
        "trunc": lambda: npy_bytes(shape)[:-10],
        "headercut": lambda: npy_bytes(shape)[:40],
        "magiconly": lambda: b"\x93NUMPY",
        "empty": lambda: b"",
        "lying": lambda: (lambda r: r[:8] + struct.pack("<H", struct.unpack("<H", r[8:10])[0] + 5000) + r[10:])(
            npy_bytes(shape)),
        "extra": lambda: npy_bytes(shape) + b"\0" * 64,
        "notdict": lambda: npy_bytes(shape, header="[1, 2, 3]"),
        "noshape": lambda: npy_bytes(shape, header="{'descr': '<f4', 'fortran_order': False, }"),
        "negshape": lambda: npy_bytes(shape, header="{'descr': '<f4', 'fortran_order': False, 'shape': (1, -2, 8, 4), }"),
        "hugeshape": lambda: npy_bytes((1, 2, 8, 4), header="{'descr': '<f4', 'fortran_order': False, "
                                       "'shape': (4294967296, 4294967296, 4294967296, 4294967296), }"),
        "textshape": lambda: npy_bytes(shape, header="{'descr': '<f4', 'fortran_order': False, 'shape': ('a', 2, 8, 4), }"),
        "garbage": lambda: bytes((i * 151 + 7) % 256 for i in range(300)),
    }[kind]()
    with open(os.path.join(tmp, g["name"]), "wb") as f:
        f.write(raw)


def gen_text(tmp, g):
    path = os.path.join(tmp, g["name"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = g["text"].encode("utf-8") if "text" in g else bytes.fromhex(g["hex"])
    with open(path, "wb") as f:
        f.write(data * g.get("repeat", 1))


def gen_dir(tmp, g):
    os.makedirs(os.path.join(tmp, g["name"]), exist_ok=True)


def gen_symlink(tmp, g):  # only ever to a path inside tmp or to /dev/full (whose node is never replaced: see cmd)
    os.symlink(g["to"], os.path.join(tmp, g["name"]))


def gen_fifo(tmp, g):
    os.mkfifo(os.path.join(tmp, g["name"]))


def walk(node, path):
    for p in path.split("/"):
        node = node[int(p)] if isinstance(node, list) else node[p]
    return node


def gen_results(tmp, g):
    """A results file from a fixture (tests/fixtures/NAME), then edited: ops are [op, path, value]."""
    with open(os.path.join(FIXTURES, g.get("base", "equal.json"))) as f:
        doc = json.load(f)
    for op in g.get("ops", []):
        kind, path = op[0], op[1]
        parent, key = (walk(doc, path.rsplit("/", 1)[0]), path.rsplit("/", 1)[1]) if "/" in path else (doc, path)
        if isinstance(parent, list):
            key = int(key)
        if kind == "set":
            parent[key] = op[2]
        elif kind == "del":
            del parent[key]
        elif kind == "dup":  # append a copy of records[i]
            doc["records"].append(json.loads(json.dumps(doc["records"][int(key)])))
        elif kind == "keep_task":  # only the records of one task
            doc["records"] = [r for r in doc["records"] if r["task"] == op[2]]
        elif kind == "drop_task":
            doc["records"] = [r for r in doc["records"] if r["task"] != op[2]]
    text = json.dumps(doc)
    if "cut" in g:
        text = text[:g["cut"]]
    with open(os.path.join(tmp, g["name"]), "w") as f:
        f.write(text)


GENERATORS = {"npy": gen_npy, "text": gen_text, "dir": gen_dir, "symlink": gen_symlink, "fifo": gen_fifo,
              "results": gen_results}


# ---- state of a case directory: what was there, what appeared, what changed -----------------------

def snapshot(tmp):
    """path -> ('f', sha) | ('l', target) | ('p',) | ('d',); never follows links, never reads a device."""
    out = {}
    for root, dirs, files in os.walk(tmp, followlinks=False):
        for name in dirs + files:
            p = os.path.join(root, name)
            rel = os.path.relpath(p, tmp)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[rel] = ("f", hashlib.sha256(f.read()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d",)
            else:
                out[rel] = ("p",)
    return out


def fifo_reader(path, sink, stop):
    """Drains a FIFO into sink while the case runs (O_NONBLOCK: opening never blocks the runner)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = None
            if chunk:
                sink.extend(chunk)
            elif stop.is_set():
                break
            else:
                time.sleep(0.01)
    finally:
        os.close(fd)


def read_npy(path):
    """(shape, values) of a little-endian float32/float64 C-order .npy."""
    raw = open(path, "rb").read()
    hl = struct.unpack("<H", raw[8:10])[0]
    hdr = raw[10:10 + hl].decode("latin-1")
    shape = tuple(int(x) for x in re.search(r"'shape': \(([^)]*)\)", hdr).group(1).replace(",", " ").split())
    code = "d" if "<f8" in hdr else "f"
    n = (len(raw) - 10 - hl) // struct.calcsize(code)
    return shape, struct.unpack("<%d%s" % (n, code), raw[10 + hl:10 + hl + n * struct.calcsize(code)])


def reference_check(out, q, k, v):
    """attend (mask none, default scale) against softmax(QK^T/sqrt(d))V in float64 (IEEE, as
    docs/nonfinite.md says): an element of O is non-finite exactly where the reference's is, a
    row whose reference is all NaN is all NaN, every finite element within 1e-4."""
    import math
    (B, H, nq, d), Q = read_npy(q)
    (_, Hkv, nk, _), K = read_npy(k)
    _, V = read_npy(v)
    oshape, O = read_npy(out)
    if oshape != (B, H, nq, d):
        return "output shape %s, want %s" % (oshape, (B, H, nq, d))
    s, bad = 1 / math.sqrt(d), []
    for b in range(B):
        for h in range(H):
            g = h // (H // Hkv)
            for i in range(nq):
                qi = Q[((b * H + h) * nq + i) * d:][:d]
                try:
                    sc = [s * sum(qi[c] * K[((b * Hkv + g) * nk + j) * d + c] for c in range(d)) for j in range(nk)]
                    m = float("nan") if any(x != x for x in sc) else max(sc)  # IEEE max keeps NaN
                    w = [math.exp(x - m) for x in sc]
                    ref = [sum(w[j] * V[((b * Hkv + g) * nk + j) * d + c] for j in range(nk)) / sum(w) for c in range(d)]
                except (ValueError, OverflowError, ZeroDivisionError):
                    ref = [float("nan")] * d
                row = O[((b * H + h) * nq + i) * d:][:d]
                if all(r != r for r in ref) and not all(x != x for x in row):
                    bad.append("row (%d,%d,%d) is all NaN in the reference but %s in the output" % (b, h, i, row[:2]))
                elif any(math.isfinite(r) != math.isfinite(o) for o, r in zip(row, ref)):
                    bad.append("row (%d,%d,%d) is %s, the reference %s (finite where it is not)"
                               % (b, h, i, list(row[:2]), ref[:2]))
                elif any(math.isfinite(r) and not abs(o - r) <= 1e-4 * (1 + abs(r)) for o, r in zip(row, ref)):
                    bad.append("row (%d,%d,%d) is %s, the reference %s" % (b, h, i, list(row[:2]), ref[:2]))
    return "%d rows wrong: %s" % (len(bad), bad[0]) if bad else None


def post_check(tmp, chk, captured):
    kind = chk[0]
    if kind == "startswith":  # [startswith, path, hex]: a regular file (or a FIFO's captured bytes)
        data = captured.get(chk[1])
        if data is None:
            p = os.path.join(tmp, chk[1])
            data = open(p, "rb").read(64) if os.path.isfile(p) and not os.path.islink(p) else b""
        return None if bytes(data).startswith(bytes.fromhex(chk[2])) else "%s does not start with %s" % (chk[1], chk[2])
    if kind == "keeps_records":  # [keeps_records, glob of the output, the resumed input]
        import glob
        outs = glob.glob(os.path.join(tmp, chk[1]))
        if not outs:
            return "no file matches " + chk[1]
        src = json.load(open(os.path.join(tmp, chk[2])))["records"]
        got = json.load(open(outs[0]))["records"]
        key = lambda r: json.dumps([r.get("task"), r.get("backend"), r.get("config"), r.get("status")], sort_keys=True)
        missing = [r for r in src if key(r) not in {key(x) for x in got}]
        return "%d of the resumed file's %d records dropped" % (len(missing), len(src)) if missing else None
    if kind == "reference":  # [reference, out, q, k, v]: issue 17's policy against a float64 reference
        return reference_check(*[os.path.join(tmp, p) for p in chk[1:5]])
    if kind == "npy_all_finite":  # [npy_all_finite, path]
        raw = open(os.path.join(tmp, chk[1]), "rb").read()
        hl = struct.unpack("<H", raw[8:10])[0]
        vals = struct.unpack("<%df" % ((len(raw) - 10 - hl) // 4), raw[10 + hl:])
        bad = sum(not (abs(v) < float("inf")) for v in vals)
        return "%d of %d values not finite" % (bad, len(vals)) if bad else None
    return "unknown post check " + kind


# ---- one case ------------------------------------------------------------------------------------

def run_case(case, args, workdir):
    tmp = os.path.join(workdir, case["id"])
    os.makedirs(tmp)
    for g in case.get("setup", []):
        GENERATORS[g["gen"]](tmp, g)
    before = snapshot(tmp)
    subst = {"{bin}": args.binary, "{tmp}": tmp, "{mpirun}": args.mpirun or "mpirun", "{fixtures}": FIXTURES}
    argv = []
    for w in case["cmd"]:
        for k, v in subst.items():
            w = w.replace(k, v)
        argv.append(w)
    stop, captured, readers = threading.Event(), {}, []
    for g in case.get("setup", []):
        if g["gen"] == "fifo":
            captured[g["name"]] = bytearray()
            t = threading.Thread(target=fifo_reader, args=(os.path.join(tmp, g["name"]), captured[g["name"]], stop))
            t.start()
            readers.append(t)
    t0 = time.time()
    proc = subprocess.Popen(argv, cwd=tmp, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    hung = False
    try:
        out, err = proc.communicate(timeout=case.get("timeout", 10))
    except subprocess.TimeoutExpired:
        hung = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    secs = time.time() - t0
    stop.set()
    for t in readers:
        t.join()
    out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    rc = proc.returncode
    after = snapshot(tmp)
    allowed = case.get("writes", [])
    ok_path = lambda p: any(fnmatch.fnmatch(p, g) for g in allowed)
    problems = []  # (class, reason), most serious first
    if hung:
        problems.append(("hang", "no exit within %gs" % case.get("timeout", 10)))
    elif rc < 0 or SANITIZER.search(err) or (rc >= 128 and "{mpirun}" not in case["cmd"][0]):
        sig = -rc if rc < 0 else rc - 128
        what = SANITIZER.search(err)
        problems.append(("crash", what.group(0).strip() if what else "killed by signal %d" % sig))
    exits = case["exit"] if isinstance(case["exit"], list) else [case["exit"]]
    if not hung and rc not in exits and not (exits == ["nonzero"] and rc != 0):
        problems.append(("wrong-exit", "exit %s, want %s" % (rc, "/".join(map(str, exits)))))
    new = sorted(p for p in after if p not in before and not ok_path(p) and after[p] != ("d",))
    tmps = sorted(p for p in after if ".tmp." in os.path.basename(p) or p.endswith(".tmp"))
    if new or tmps:
        problems.append(("partial-file", "left behind: " + ", ".join((tmps + new)[:4])))
    changed = sorted(p for p in before if after.get(p) != before[p] and not ok_path(p))
    if changed:
        problems.append(("changed-file", "changed or replaced: " + ", ".join(
            "%s (%s -> %s)" % (p, before[p][0], after.get(p, ("gone",))[0]) for p in changed[:4])))
    if not hung:
        if case.get("stderr") and not re.search(case["stderr"], err):
            problems.append(("wrong-message", "stderr does not match /%s/" % case["stderr"]))
        if case.get("stderr_not") and re.search(case["stderr_not"], err):
            problems.append(("wrong-message", "stderr matches /%s/" % case["stderr_not"]))
        if case.get("stdout") and not re.search(case["stdout"], out):
            problems.append(("wrong-message", "stdout does not match /%s/" % case["stdout"]))
        one = case.get("one_error", exits == [2] and "{mpirun}" not in case["cmd"][0])
        n_err = len(re.findall(r"(?m)\berror:", err))
        if one and n_err != 1:
            problems.append(("wrong-message", "%d 'error:' lines, want exactly one" % n_err))
        if rc == 0:
            for chk in case.get("post", []):
                why = post_check(tmp, chk, captured)
                if why:
                    problems.append(("wrong-output", why))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return case, problems, rc, secs, err


ORDER = ["setup-error", "hang", "crash", "wrong-exit", "partial-file", "changed-file", "wrong-message", "wrong-output"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--cases", default=os.path.join(HERE, "cases.json"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--mpirun", default=shutil.which("mpirun"))
    ap.add_argument("--only-tag", action="append", default=[])
    ap.add_argument("--skip-tag", action="append", default=[])
    ap.add_argument("--ids", default="")
    ap.add_argument("--list-tags", action="store_true", help="each tag with its number of cases")
    ap.add_argument("--list", metavar="TAG", help="the ids of the cases with TAG, one a line")
    ap.add_argument("--keep", metavar="DIR", help="keep the case directories under DIR")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the stderr tail of each non-ok case")
    args = ap.parse_args()
    with open(args.cases) as f:
        cases = json.load(f)
    ids = [c["id"] for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        sys.exit("run_campaign: duplicate case ids: " + ", ".join(sorted(dup)))
    if args.list_tags:
        tags = {}
        for c in cases:
            for t in c.get("tags", []):
                tags[t] = tags.get(t, 0) + 1
        for t in sorted(tags):
            print("%-16s %d" % (t, tags[t]))
        return 0
    if args.list:
        for c in cases:
            if args.list in c.get("tags", []):
                print(c["id"])
        return 0
    want = set(filter(None, args.ids.split(",")))
    sel = [c for c in cases if (not want or c["id"] in want)
           and (not args.only_tag or set(args.only_tag) & set(c.get("tags", [])))
           and not set(args.skip_tag) & set(c.get("tags", []))]
    skipped = 0
    if not args.mpirun:
        skipped = sum("mpi" in c.get("tags", []) for c in sel)
        sel = [c for c in sel if "mpi" not in c.get("tags", [])]
    args.binary = os.path.abspath(args.binary)
    workdir = args.keep or tempfile.mkdtemp(prefix="attn-campaign-")
    os.makedirs(workdir, exist_ok=True)
    t0 = time.time()
    bad = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        def guarded(c):
            try:
                return run_case(c, args, workdir)
            except Exception as e:  # a broken case (its generator, its table entry) is a failure too
                return c, [("setup-error", "%s: %s" % (type(e).__name__, e))], None, 0, ""
        for case, problems, rc, secs, err in ex.map(guarded, sel):
            if problems:
                problems.sort(key=lambda p: ORDER.index(p[0]))
                bad.append((case, problems))
                print("%-13s %-34s [%s] %s" % (problems[0][0], case["id"], " ".join(case.get("tags", [])),
                                              "; ".join(p[1] for p in problems)))
                if args.verbose:
                    for line in err.strip().splitlines()[-4:]:
                        print("      | " + line[:200])
                sys.stdout.flush()
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    count = lambda cls: sum(p[0][0] == cls for _, p in bad)
    by_tag = {}
    for case, _ in bad:
        for t in case.get("tags", []):
            if t.startswith("defect:"):
                by_tag.setdefault(t, []).append(case["id"])
    for t in sorted(by_tag, key=lambda t: int(t.split(":")[1])):
        print("failing %s: %s" % (t, " ".join(by_tag[t])))
    print("%d bad inputs, %d defects, %d hangs, %d crashes, %d partial files "
          "(%d wrong exit, %d wrong message, %d wrong output, %d changed files)%s in %.0f s"
          % (len(sel), len(bad), count("hang"), count("crash"), count("partial-file"), count("wrong-exit"),
             count("wrong-message"), count("wrong-output"), count("changed-file"),
             ", %d mpi cases skipped (no mpirun)" % skipped if skipped else "", time.time() - t0))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
