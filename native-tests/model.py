#!/usr/bin/env python3
"""Model-based random test: unionfs vs kernel overlayfs (the model).

For every sequence: random lower layers (2 layers, files, dirs, symlinks, hard links,
whiteouts, opaque dirs) are generated from a seed; the same random operation sequence
(create, write at offsets, truncate, rename with flags, link, unlink, mkdir, rmdir, symlink,
chmod, setxattr, read, readdir, stat) runs through a unionfs mount and through a kernel
overlayfs mount (redirect_dir=on,index=on: the hard-link semantics UnionFs implements) over the same lowers with fresh uppers, in lockstep. Every
op's result (errno or value) is compared, and at the end the merged trees (names, types,
sizes, content hashes, modes, symlink targets, user xattrs). A failing sequence is shrunk
(ops dropped while it still fails) and printed as JSON; shrunk failures are appended to the
regressions file (one JSON object per line), and the regressions file is replayed first.

usage: model.py --unionfs BIN --dir SCRATCH [--seqs N] [--len L] [--seed S]
                [--regressions FILE] [--no-record]
exit 0: no difference; 1: differences (printed); 2: setup problem.
"""
import argparse, ctypes, errno, hashlib, json, os, random, shutil, stat, subprocess, sys, time

libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
AT_FDCWD = -100
RENAME_FLAGS = {"": 0, "noreplace": 1, "exchange": 2}

DIRS = ["", "d1", "d2", "d1/e", "o"]
NAMES = ["a", "b", "c", "d1", "d2", "e", "o", "l"]


def paths(rng):
    d = rng.choice(DIRS)
    n = rng.choice(NAMES)
    return (d + "/" + n) if d else n


# ---------------------------------------------------------------------------------------
# lower layers

def make_lowers(base, seed):
    rng = random.Random(seed * 7 + 1)
    l1, l2 = os.path.join(base, "l1"), os.path.join(base, "l2")
    for l in (l1, l2):
        os.makedirs(l)
    # L2 (bottom): a full tree
    for d in ["d1", "d2", "d1/e", "o"]:
        os.makedirs(os.path.join(l2, d), exist_ok=True)
    for d in DIRS:
        for n in ["a", "b", "c"]:
            if rng.random() < 0.6:
                p = os.path.join(l2, d, n)
                with open(p, "wb") as f:
                    f.write(bytes(rng.randrange(256) for _ in range(rng.choice([0, 5, 100, 5000]))))
                os.chmod(p, rng.choice([0o644, 0o600, 0o755]))
    if os.path.exists(os.path.join(l2, "a")) and rng.random() < 0.5:
        os.link(os.path.join(l2, "a"), os.path.join(l2, "d2", "l"))
    os.symlink("a", os.path.join(l2, "d1", "l"))
    # L1 (top): whiteouts, opaque dirs, overrides
    os.makedirs(os.path.join(l1, "d1"), exist_ok=True)
    for d in ["", "d1"]:
        for n in ["a", "b", "c"]:
            r = rng.random()
            p = os.path.join(l1, d, n)
            if r < 0.25:
                os.mknod(p, stat.S_IFCHR | 0o000, os.makedev(0, 0))  # whiteout
            elif r < 0.5:
                with open(p, "wb") as f:
                    f.write(b"L1 version of " + n.encode())
    if rng.random() < 0.5:
        os.makedirs(os.path.join(l1, "o"), exist_ok=True)
        os.setxattr(os.path.join(l1, "o"), "trusted.overlay.opaque", b"y")
        with open(os.path.join(l1, "o", "c"), "w") as f:
            f.write("opaque child")
    if rng.random() < 0.3:
        os.mknod(os.path.join(l1, "d2"), stat.S_IFCHR, os.makedev(0, 0))  # whole dir whited out
    return [l1, l2]


# ---------------------------------------------------------------------------------------
# ops

def gen_op(rng):
    k = rng.randrange(100)
    p, q = paths(rng), paths(rng)
    if k < 12: return ["create", p, rng.choice([0o644, 0o600, 0o755])]
    if k < 24: return ["write", p, rng.randrange(0, 9000), rng.randrange(1, 3000), rng.randrange(1 << 30)]
    if k < 30: return ["truncate", p, rng.choice([0, 1, 50, 4096, 10000])]
    if k < 40: return ["rename", p, q, rng.choice(["", "", "noreplace", "exchange"])]
    if k < 45: return ["link", p, q]
    if k < 53: return ["unlink", p]
    if k < 59: return ["mkdir", p]
    if k < 65: return ["rmdir", p]
    if k < 69: return ["symlink", rng.choice(["a", "../b", "/nonexistent", "d1"]), p]
    if k < 74: return ["chmod", p, rng.choice([0o600, 0o644, 0o700, 0o755, 0o444])]
    if k < 78: return ["setxattr", p, "user." + rng.choice(["x", "y"]), rng.choice(["1", "22", ""])]
    if k < 88: return ["read", p]
    if k < 94: return ["readdir", rng.choice(DIRS)]
    return ["stat", p]


def ename(e):
    return errno.errorcode.get(e, str(e))


def run_op(root, op):
    """returns a comparable result"""
    kind = op[0]
    P = lambda s: os.path.join(root, s) if s else root
    try:
        if kind == "create":
            fd = os.open(P(op[1]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, op[2]); os.close(fd)
            return "ok"
        if kind == "write":
            _, p, off, ln, s = op
            data = random.Random(s).randbytes(ln)
            fd = os.open(P(p), os.O_WRONLY)
            try: os.pwrite(fd, data, off)
            finally: os.close(fd)
            return "ok"
        if kind == "truncate":
            os.truncate(P(op[1]), op[2]); return "ok"
        if kind == "rename":
            r = libc.renameat2(AT_FDCWD, P(op[1]).encode(), AT_FDCWD, P(op[2]).encode(), RENAME_FLAGS[op[3]])
            if r < 0:
                raise OSError(ctypes.get_errno(), "renameat2")
            return "ok"
        if kind == "link":
            os.link(P(op[1]), P(op[2]), follow_symlinks=False); return "ok"
        if kind == "unlink":
            os.unlink(P(op[1])); return "ok"
        if kind == "mkdir":
            os.mkdir(P(op[1]), 0o755); return "ok"
        if kind == "rmdir":
            os.rmdir(P(op[1])); return "ok"
        if kind == "symlink":
            os.symlink(op[1], P(op[2])); return "ok"
        if kind == "chmod":
            os.chmod(P(op[1]), op[2], follow_symlinks=True); return "ok"
        if kind == "setxattr":
            os.setxattr(P(op[1]), op[2], op[3].encode(), follow_symlinks=False); return "ok"
        if kind == "read":
            with open(P(op[1]), "rb") as f:
                return "ok " + hashlib.md5(f.read()).hexdigest()
        if kind == "readdir":
            return "ok " + " ".join(sorted(os.listdir(P(op[1]))))
        if kind == "stat":
            st = os.lstat(P(op[1]))
            size = "-" if stat.S_ISDIR(st.st_mode) else st.st_size
            return "ok %o %s" % (st.st_mode, size)
    except OSError as e:
        return ename(e.errno)
    raise ValueError(op)


def tree(root):
    out = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        for n in sorted(dns + fns):
            p = os.path.join(dp, n)
            rel = os.path.relpath(p, root)
            try:
                st = os.lstat(p)
            except OSError as e:
                out.append("%s lstat %s" % (rel, ename(e.errno))); continue
            line = "%s %o" % (rel, st.st_mode)
            if stat.S_ISREG(st.st_mode):
                try:
                    with open(p, "rb") as f:
                        line += " size=%d md5=%s" % (st.st_size, hashlib.md5(f.read()).hexdigest())
                except OSError as e:
                    line += " read=%s" % ename(e.errno)
            elif stat.S_ISLNK(st.st_mode):
                line += " -> " + os.readlink(p)
            try:
                xs = sorted(x for x in os.listxattr(p, follow_symlinks=False) if x.startswith("user."))
                for x in xs:
                    line += " %s=%r" % (x, os.getxattr(p, x, follow_symlinks=False))
            except OSError as e:
                line += " xattr=%s" % ename(e.errno)
            out.append(line)
    return out


# ---------------------------------------------------------------------------------------
# mounts

class Env:
    def __init__(self, a):
        self.a = a
        self.mounted = []

    def mount(self, kind, lowers, base, fresh=True):
        u, w, m = (os.path.join(base, kind + x) for x in ("-u", "-w", "-m"))
        for d in (u, w, m):
            if fresh:
                shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d, exist_ok=True)
        opts = "lowerdir=%s,upperdir=%s,workdir=%s" % (":".join(lowers), u, w)
        if kind == "kernel":
            cmd = ["mount", "-t", "overlay", "overlay", "-o", opts + ",redirect_dir=on,index=on", m]
        else:
            cmd = [self.a.unionfs, "mount", "-o", opts, m]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError("mount %s failed: %s" % (kind, r.stdout + r.stderr))
        self.mounted.append((kind, m))
        return m

    def umount_all(self):
        while self.mounted:
            kind, m = self.mounted.pop()
            cmd = [self.a.unionfs, "umount", m] if kind == "unionfs" else ["umount", m]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)
                raise RuntimeError("umount %s failed: %s" % (m, r.stdout + r.stderr))


def run_seq(env, base, lseed, ops):
    """returns None if unionfs and the kernel agree, else a description"""
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    lowers = make_lowers(os.path.join(base, "lowers"), lseed)
    try:
        mk = env.mount("kernel", lowers, base)
        mu = env.mount("unionfs", lowers, base)
        for i, op in enumerate(ops):
            rk, ru = run_op(mk, op), run_op(mu, op)
            if rk != ru:
                return "op #%d %s: kernel %s, unionfs %s" % (i, json.dumps(op), rk, ru)
        tk, tu = tree(mk), tree(mu)
        if tk != tu:
            sk, su = set(tk), set(tu)
            return "final tree differs: kernel only %s; unionfs only %s" % (
                sorted(sk - su)[:4], sorted(su - sk)[:4])
        # and after a remount of unionfs (persistence)
        env.umount_all()
        mu = env.mount("unionfs", lowers, base, fresh=False)
        tu2 = tree(mu)
        if tu2 != tk:
            sk, su = set(tk), set(tu2)
            return "tree after unionfs remount differs: kernel only %s; unionfs only %s" % (
                sorted(sk - su)[:4], sorted(su - sk)[:4])
        return None
    finally:
        env.umount_all()


def shrink(env, base, lseed, ops, deadline):
    """drop ops (chunks, then singles) while the sequence still fails"""
    cur = list(ops)
    chunk = max(1, len(cur) // 2)
    while chunk >= 1 and time.time() < deadline:
        i, progress = 0, False
        while i < len(cur) and time.time() < deadline:
            cand = cur[:i] + cur[i + chunk:]
            if cand and run_seq(env, base, lseed, cand):
                cur, progress = cand, True
            else:
                i += chunk
        if not progress:
            chunk //= 2
    return cur


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unionfs", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--seqs", type=int, default=20)
    ap.add_argument("--len", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--regressions")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--shrink-seconds", type=int, default=60)
    ap.add_argument("--max-failures", type=int, default=3)
    a = ap.parse_args()
    env = Env(a)
    base = os.path.join(a.dir, "run")
    failures, nops, nseq = [], 0, 0
    known = []
    if a.regressions and os.path.exists(a.regressions):
        for line in open(a.regressions):
            line = line.strip()
            if line and not line.startswith("#"):
                known.append(json.loads(line))
    cases = [(c["lseed"], c["ops"], "regression " + c.get("note", "")) for c in known]
    for s in range(a.seqs):
        seed = a.seed * 100003 + s
        rng = random.Random(seed)
        cases.append((seed, [gen_op(rng) for _ in range(a.len)], "seed %d" % seed))
    try:
        for lseed, ops, what in cases:
            nseq += 1
            nops += len(ops)
            d = run_seq(env, base, lseed, ops)
            if not d:
                continue
            print("DIFF in %s (%d ops): %s" % (what, len(ops), d), flush=True)
            small = ops if what.startswith("regression") else shrink(env, base, lseed, ops, time.time() + a.shrink_seconds)
            d2 = run_seq(env, base, lseed, small) or d
            case = {"lseed": lseed, "ops": small, "note": d2[:200]}
            if what.startswith("regression"):
                case["regression"] = True
            print("  shrunk to %d ops: %s" % (len(small), d2), flush=True)
            print("  case: " + json.dumps(case), flush=True)
            failures.append(case)
            if a.regressions and not a.no_record and not what.startswith("regression"):
                with open(a.regressions, "a") as f:
                    f.write(json.dumps(case) + "\n")
            if what.startswith("regression"):
                continue
            if sum(1 for f in failures if not f.get("regression")) >= a.max_failures:
                print("stopping after %d failures" % len(failures))
                break
    except RuntimeError as e:
        print("model.py setup problem: %s" % e)
        return 2
    finally:
        try:
            env.umount_all()
        except RuntimeError as e:
            print(e)
    nreg = sum(1 for f in failures if f.get("regression"))
    print("# figure: model-based test: %d sequences (%d fixed regressions), %d ops each on unionfs and kernel overlayfs, %d failing (%d of them fixed regressions)" % (nseq, len(known), nops, len(failures), nreg))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
