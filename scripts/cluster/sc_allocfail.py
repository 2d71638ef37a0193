# SPDX-License-Identifier: GPL-2.0
"""allocfail: lock traffic under connection resets while a few percent of
the allocations made by dlm.ko fail (failslab and fail_page_alloc of the
debug flavour, restricted by their stack-trace filter to dlm.ko's text);
then every link must move again within 10 s, the counter must be exact,
and the consoles and kmemleak must be clean.  Documentation/testing.rst,
"allocfail", says which allocations fail and why exactly those."""

import os
import re
import subprocess
import time

from scenario import LS, RES, Failed, anchor, check, lvb_value, watched_totals

PROB = 3              # percent of the eligible allocations that fail
SLICES = 2            # injection slices (slice_modes)
SLICE_SECS = 15       # 30 s of injection in all
RECOVER_SECS = 10     # after the injection every link moves within this
RESET_MS = 300        # hub reset-every period during the injection
TIMES = 1000000       # failures allowed per injector (a counter, not a bound)
WARMUP_SECS = 5
AFTER_SECS = 8        # torture goes on this long after the recovery check
BATCH = 10            # increments per torture batch (progress granularity)
MASTER = 1            # node holding the anchor: master of the counter


def expect(ctx, name, cond, msg):
    """check(cond, msg) that `--break SCENARIO:NAME` turns around, to show
    this assertion failing; `--break SCENARIO:all` turns every one that
    holds around and fails the scenario at its end with all their messages
    (one that does not hold fails at once, as without --break)
    (Documentation/testing.rst, "Allocation failure and churn").  --break
    may list several, comma-separated (allocfail:all,churn:all)."""
    b = (getattr(getattr(ctx, "args", None), "break_assert", None) or "").split(",")
    scenario = ctx.name.split("[")[0]
    if "%s:%s" % (scenario, name) in b:
        check(not cond, "[--break %s:%s] %s" % (scenario, name, msg))
    elif "%s:all" % scenario in b and cond:
        ctx.broken = getattr(ctx, "broken", []) + ["%s: %s" % (name, msg)]
    else:
        check(cond, msg)


def end_breaks(ctx):
    """The end of a scenario under `--break SCENARIO:all`."""
    broken = getattr(ctx, "broken", [])
    if broken:
        raise Failed("[--break %s:all] %d assertions turned around: %s" % (
            ctx.name.split("[")[0], len(broken), " || ".join(broken)))


# --- where the comms layer lies in dlm.ko ----------------------------------


def _readelf(args, path):
    return subprocess.run(["readelf", "-W"] + args + [path], capture_output=True,
                          text=True, check=True).stdout


def _sections(path):
    """{index: (name, size)} from the section headers."""
    out = {}
    for m in re.finditer(r"^\s*\[\s*(\d+)\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+"
                         r"([0-9a-f]+)\s", _readelf(["-S"], path), re.M):
        out[int(m.group(1))] = (m.group(2), int(m.group(3), 16))
    return out


def _functions(path):
    """[(offset, size, name, section index)] of the defined functions."""
    out = []
    for m in re.finditer(r"^\s*\d+:\s+([0-9a-f]+)\s+(0x[0-9a-f]+|\d+)\s+FUNC\s+\w+\s+\w+\s+"
                         r"(\d+)\s+(\S+)$", _readelf(["-s"], path), re.M):
        out.append((int(m.group(1), 16), int(m.group(2), 0), m.group(4), int(m.group(3))))
    return out


LAYOUTS = {}


def comms_layout(kdir, dlm):
    """Where the comms layer and the lock manager lie in the .text of the
    dlm.ko a node runs, as offsets from the start of .text, from the
    symbol tables of the module and of its object files: `comms` is the
    code of lowcomms.o + midcomms.o (stock) or of our Rust crate and C
    shim (dlm_comms.o + dlm_shim.o); `core_end` is where memory.o starts:
    everything before it is the lock manager's core (ast.c config.c dir.c
    lock.c lockspace.c main.c member.c), through which every call of the
    lock manager into the comms layer passes."""
    if dlm in LAYOUTS:
        return LAYOUTS[dlm]
    if dlm == "stock":
        ko = os.path.join(kdir, "fs", "dlm", "dlm.ko")
        comms_objs = ("midcomms.o", "lowcomms.o")
    else:
        ko = dlm
        comms_objs = ("dlm_comms.o", "dlm_shim.o")
    d = os.path.dirname(ko)
    defined = {}
    # The objects linked into the module (Kbuild's dlm.mod), not whatever
    # else lies in the directory (an older build's config.o).
    with open(os.path.join(d, "dlm.mod")) as f:
        objs = [os.path.basename(l.strip()) for l in f if l.strip()]
    for o in objs:
        for _, _, n, x in _functions(os.path.join(d, o)):
            if x:
                defined.setdefault(n, set()).add(o)
    # Names defined in more than one object (asan.module_ctor, out-of-line
    # copies of static inlines) say nothing about where they are.
    comms = {n for n, objs in defined.items() if objs <= set(comms_objs)}
    ambiguous = {n for n, objs in defined.items() if len(objs) > 1 and objs & set(comms_objs)}
    memory = {n for n, objs in defined.items() if objs == {"memory.o"}}
    secs = _sections(ko)
    text = [i for i, (n, _) in secs.items() if n == ".text"]
    check(len(text) == 1, "%s: no single .text section (%s)" % (ko, secs))
    text = text[0]
    funcs = _functions(ko)
    in_text = sorted(f for f in funcs if f[3] == text)
    c = [f for f in in_text if f[2] in comms]
    check(c, "%s: no function of %s found in .text" % (ko, "+".join(comms_objs)))
    lo, hi = c[0][0], max(o + s for o, s, _, _ in c)
    intruders = [f[2] for f in in_text if lo <= f[0] < hi and f[2] not in comms
                 and f[2] not in ambiguous]
    check(not intruders, "%s: the comms code is not one range of .text: %s inside it" %
          (ko, intruders[:5]))
    outside = sorted({secs[f[3]][0] for f in funcs if f[2] in comms and f[3] != text
                      and f[3] in secs})
    m = [f[0] for f in in_text if f[2] in memory]
    check(m and max(m) < lo, "%s: memory.o does not come before the comms code" % ko)
    probe = [f for f in c if f[2] == "dlm_midcomms_get_mhandle"]
    check(probe, "%s: no dlm_midcomms_get_mhandle" % ko)
    lay = {
        "ko": ko, "text_size": secs[text][1], "comms": (lo, hi), "core_end": min(m),
        "comms_names": comms, "memory_names": memory, "outside": outside,
        "probe": ("dlm_midcomms_get_mhandle", probe[0][0]),
    }
    LAYOUTS[dlm] = lay
    return lay


# --- the stack dumps of injected failures on the console -------------------

TS = re.compile(r"^\[\s*\d+\.\d+\] ?")
HEADER = "FAULT_INJECTION: forcing a failure."
NAME = re.compile(r"^name (failslab|fail_page_alloc), interval \d+, probability \d+, "
                  r"space -?\d+, times -?\d+$")
CPU = re.compile(r"^CPU: \d+ UID: \d+ PID: \d+ Comm: (\S+)")
INFO = re.compile(r"^(Tainted: .*|Hardware name: .*|Workqueue: .*|Stopper: .*|Sched_ext: .*)$")
# The registers of an interrupted context, where the trace crosses into it.
REGS = re.compile(r"^(RIP: [0-9a-f]{4}:.*|Code: .*|RSP: [0-9a-f]{4}:[0-9a-f]{16} EFLAGS: "
                  r"[0-9a-f]{8}( ORIG_RAX: [0-9a-f]{16})?|R[A-Z0-9]{2}: [0-9a-f]{16} "
                  r"R[A-Z0-9]{2}: [0-9a-f]{16} R[A-Z0-9]{2}: [0-9a-f]{16})$")
FRAME = re.compile(r"^ (\? )?(\S+)\+0x[0-9a-f]+/0x[0-9a-f]+( \[([^\] ]+)[^\]]*\])?$")
MARK = re.compile(r"^ <(/?)(TASK|IRQ|SOFTIRQ|NMI)>$")
# Lines of other contexts that printk can put between a report's lines
# (seen: "dlm: node 2: socket error sending to node 1, sk_err=104" from the
# error callback, between two frames of a dump_stack()).
INTERLEAVED = re.compile(r"^(dlm: |dlmrs-torture )")


def _body(line):
    return TS.sub("", line).rstrip("\r")


def _own_lines(lines, i, limit):
    """From lines[i] on, the indexes of up to limit lines that are not
    INTERLEAVED, and the indexes of the interleaved ones among them."""
    idx, extra, k = [], [], i
    while k < len(lines) and len(idx) < limit:
        (extra if INTERLEAVED.match(_body(lines[k])) else idx).append(k)
        k += 1
    return idx, extra


def _header_at(lines, i):
    """fail_dump()'s two lines starting at lines[i], as (injector, indexes);
    None unless they have exactly that shape."""
    if _body(lines[i]) != HEADER:
        return None
    idx, _ = _own_lines(lines, i, 2)
    m = NAME.match(_body(lines[idx[-1]])) if len(idx) == 2 else None
    return (m.group(1), idx) if m else None


def _dump_at(lines, i):
    """The dump_stack() of a failing context starting at lines[i] (its
    "CPU:" line up to its "</TASK>"), as (report, indexes); None unless
    every line has exactly that shape and the trace starts in
    should_fail_ex(), so that anything else (a real splat) stays in the
    scan.  Lines another context logged into the middle (the DLM's own
    lines and the torture's, INTERLEAVED) are not the report's."""
    c = CPU.match(_body(lines[i]))
    if not c:
        return None
    idx, _ = _own_lines(lines, i, 400)
    own = [_body(lines[x]) for x in idx]
    rep = {"injector": None, "comm": c.group(1), "frames": [], "irq": False}
    j = 1
    while j < len(own) and INFO.match(own[j]):
        j += 1
    if j >= len(own) or own[j] != "Call Trace:":
        return None
    j += 1
    section = None
    while j < len(own):
        b = own[j]
        j += 1
        mk = MARK.match(b)
        if mk:
            if not mk.group(1):
                section = mk.group(2)
                if section != "TASK":
                    rep["irq"] = True
            elif mk.group(2) == "TASK":
                break
            else:
                section = None
            continue
        if section is not None and REGS.match(b):
            continue
        f = FRAME.match(b)
        if not f or section is None:
            return None
        if not f.group(1):
            rep["frames"].append((f.group(2), f.group(4), section))
    else:
        return None
    names = [n for n, _, _ in rep["frames"]]
    if names[:2] != ["dump_stack_lvl", "should_fail_ex"]:
        return None
    rep["injector"] = "failslab" if "should_failslab" in names[2:4] else "fail_page_alloc"
    return rep, idx[:j]


def split_injections(lines):
    """(reports of injected failures, the other lines).

    A report is fail_dump()'s header and name lines, then dump_stack() of
    the failing context.  The two are separate printk calls, so a context
    preempted between them lets another context's whole report come first
    (seen in make check: two headers, then two dumps).  A dump is therefore
    paired with the oldest header of the same injector not yet paired;
    a header or dump left without its other half stays in the scan."""
    pending, reps, taken, i = [], [], set(), 0
    while i < len(lines):
        h = _header_at(lines, i)
        if h:
            pending.append(h)
            i = h[1][-1] + 1
            continue
        d = _dump_at(lines, i)
        match = d and [h for h in pending if h[0] == d[0]["injector"]]
        if match:
            pending.remove(match[0])
            taken.update(match[0][1])
            taken.update(d[1])
            reps.append(d[0])
            i = d[1][-1] + 1
            continue
        i += 1
    return reps, [l for k, l in enumerate(lines) if k not in taken]


def strip_injections(lines):
    return split_injections(lines)[1]


def rust_path(name):
    """The identifiers of a Rust v0 symbol (_R...), e.g. ['node',
    'WriteQueue', 'new_page']; [name] for anything else."""
    if not name.startswith("_R"):
        return [name]
    out, i = [], 2
    while i < len(name):
        m = re.compile(r"(\d+)_?").match(name, i)
        if not m or name[i - 1:i].isdigit():
            i += 1
            continue
        n = int(m.group(1))
        ident = name[m.end():m.end() + n]
        if n and len(ident) == n and re.match(r"^[A-Za-z_]\w*$", ident):
            out.append(ident)
            i = m.end() + n
        else:
            i = m.end()
    return out or [name]


def classify(rep, lay):
    """(class, site) of one injected failure: class "comms" when the
    innermost reliable frame in dlm.ko (memory.c's allocator wrappers
    skipped) is comms code, "lock manager" when it is not, "interrupt" when
    an interrupt or softirq allocated on top of dlm.ko code without a frame
    of its own in it; site names the innermost frame of our own code."""
    dlm = [(n, s) for n, mod, s in rep["frames"] if mod == "dlm" and n not in lay["memory_names"]]
    if not dlm:
        return "none", "-"
    name, section = dlm[0]
    if rep["irq"] and section == "TASK":
        cls = "interrupt"
    elif name in lay["comms_names"]:
        cls = "comms"
    else:
        cls = "lock manager"
    site = name
    for n, _ in dlm:
        p = rust_path(n)
        if n.startswith("_R") and not {"kernel", "core", "alloc"} & set(p[:2]):
            site = "::".join(p[-2:])
            break
        if not n.startswith("_R"):
            site = n
            break
    return cls, site


# --- the scenario -----------------------------------------------------------


def arm_args(mode, base, lay):
    """faultinject arm arguments for one injector.  "calls": any allocation
    with a return address in dlm.ko's text, in task context of flagged
    tasks only (the torture processes of the nodes that master nothing:
    what fails there is refused to the writer at once, which dlmt makes
    again); "comms": allocations the comms layer makes on its own account,
    in any context (a comms frame on the stack and no frame of the lock
    manager's core).  Kernel workers are not flagged: their comms
    allocations are the comms mode's, and the stock layer processes
    received messages in a worker, where a failure inside the lock manager
    (a reply it cannot allocate is never sent again) would test the lock
    manager, not the comms layer."""
    if mode == "calls":
        return "%d 0x%x 0x%x 0 0 1 %d" % (PROB, base, base + lay["text_size"], TIMES)
    lo, hi = lay["comms"]
    return "%d 0x%x 0x%x 0x%x 0x%x 0 %d" % (PROB, base + lo, base + hi, base,
                                          base + lay["core_end"], TIMES)


def slice_modes(k):
    """{injector: mode} of slice k: each slice fails slab objects in one
    mode and pages in the other, the next slice the other way round."""
    a, b = ("calls", "comms") if k % 2 == 0 else ("comms", "calls")
    return {"failslab": a, "fail_page_alloc": b}


def arm_script(k, base, lay):
    return "faultinject disarm && " + " && ".join(
        "INJECTORS=%s faultinject arm %s" % (inj, arm_args(mode, base, lay))
        for inj, mode in sorted(slice_modes(k).items()))


def hold_pairs(cl, ctx, ids):
    """Each node j masters m<j>p<i> for every other node i (an NL lock on
    each, held to the end), so that a lock of m<j>p<i> by node i is traffic
    between i and j and nothing else."""
    for j in ids:
        cl.node(j).run(
            "dlmt hold %s --prefix m%dp --count %d --mode NL > /tmp/pairs.out 2>&1 & "
            "i=0; while ! grep -q ready=1 /tmp/pairs.out; do i=$((i+1)); "
            "[ $i -lt 600 ] || { cat /tmp/pairs.out; exit 1; }; usleep 100000; done"
            % (LS, j, max(ids) + 1), timeout=90)
    ctx.say("pair resources m<j>p<i> mastered on j held (NL) on every node")


def link_check(cl, ids):
    """Start on every node i, for every other node j at once: PR lock and
    unlock of m<j>p<i> (request and unlock to j, grant and reply from j)."""
    def script(i):
        return " ".join(
            "( dlmt lvb %s m%dp%d --timeout %d >/dev/null && echo link to=%d ok=1 || "
            "echo link to=%d ok=0 ) &" % (LS, j, i, RECOVER_SECS, j, j)
            for j in ids if j != i) + " wait"
    return {i: cl.node(i).start(script(i), timeout=RECOVER_SECS + 30) for i in ids}


def progress(cl, tags):
    """{node: completed torture batches} from the consoles."""
    out = {}
    for i, tag in tags.items():
        out[i] = len(re.findall(r"dlmrs-torture %s batch=\d+ rc=0 " % re.escape(tag),
                                cl.node(i).console_text()))
    return out


def sc_allocfail(cl, ctx):
    ids = cl.alive()
    dlm = {i: cl.node(i).dlm for i in ids}
    inject = [i for i in ids if dlm[i] != "stock"] or list(ids)
    lays = {i: comms_layout(cl.kdir, dlm[i]) for i in inject}
    for i in inject:
        r = cl.node(i).run("faultinject probe")
        kv = r.kv("faultinject")
        expect(ctx, "probe", kv.get("ok") == "1", "node %d: no allocation fault injection "
               "(%s): allocfail needs the debug flavour (scripts/kernel/debug.config)" %
               (i, r.out.strip()))
    base = {}
    for i in inject:
        base[i] = int(cl.node(i).run("cat /sys/module/dlm/sections/.text").out.strip(), 16)
        name, off = lays[i]["probe"]
        r = cl.node(i).run("grep ' %s\\b' /proc/kallsyms | head -1" % name)
        addr = int(r.out.split()[0], 16)
        expect(ctx, "layout", addr == base[i] + off, "node %d: %s is at 0x%x, the layout of "
               "%s says 0x%x" % (i, name, addr, lays[i]["ko"], base[i] + off))
        lo, hi = lays[i]["comms"]
        ctx.say("node %d (%s): .text 0x%x + 0x%x, comms [0x%x, 0x%x), lock manager core "
                "[0, 0x%x)%s" % (i, "stock" if dlm[i] == "stock" else "ours", base[i],
                                 lays[i]["text_size"], lo, hi, lays[i]["core_end"],
                                 ", comms code also in %s" % lays[i]["outside"]
                                 if lays[i]["outside"] else ""))
    cl.console_filters = (strip_injections,)
    cl.join(LS, ids)
    release = anchor(cl, ctx, MASTER)
    hold_pairs(cl, ctx, ids)
    # The torture processes of the injected nodes that master nothing are
    # flagged for the "calls" mode (dlmt inherits make-it-fail from the
    # shell that starts torture-loop).
    flagged = [i for i in inject if i != MASTER]
    tags = {i: "a%d" % i for i in ids}
    pend = {}
    for i in ids:
        pend[i] = cl.node(i).start(
            "%srm -f /tmp/torture-stop-%s; torture-loop %s %s 3600 %d %s --timeout %d "
            "--retry-nomem" % ("echo 1 > /proc/self/make-it-fail; " if i in flagged else "",
                               tags[i], LS, RES, BATCH, tags[i], 60 * cl.scale),
            timeout=3900)
    hub0 = cl.hub.stats()
    counts = {i: {"calls": 0, "comms": 0} for i in inject}
    recovery = {}

    def injected(k, res):
        """Add up what slice k injected, from the disarm replies."""
        for i, r in res.items():
            kv = r.kv("faultinject slab_left")
            modes = slice_modes(k)
            counts[i][modes["failslab"]] += TIMES - int(kv["slab_left"])
            counts[i][modes["fail_page_alloc"]] += TIMES - int(kv["page_left"])

    def during():
        time.sleep(WARMUP_SECS)
        cl.hub.cmd("reset-every %d" % RESET_MS)
        ctx.say("injecting %d%% allocation failures on %s for %ds (slices of %ds: slab "
                "objects in calls mode and pages in comms mode, then the other way round), "
                "hub reset-every %d ms; flagged torture on %s" % (
                    PROB, inject, SLICES * SLICE_SECS, SLICE_SECS, RESET_MS, flagged))
        t_end = time.monotonic()
        res = None
        try:
            for k in range(SLICES):
                t_end += SLICE_SECS
                res2 = cl.on(inject, lambda i: arm_script(k, base[i], lays[i]))
                if res:
                    injected(k - 1, res2)
                res = res2
                time.sleep(max(0, t_end - time.monotonic()))
        finally:
            res2 = cl.on(inject, "faultinject disarm")
            t_stop = time.monotonic()
            if res:
                injected(SLICES - 1, res2)
            links = link_check(cl, ids)
            cl.hub.cmd("reset-stop")
        # Within RECOVER_SECS: every node completes a torture batch, and
        # every node completes a lock whose master is each other node.
        p0 = progress(cl, tags)
        moved = {}
        while time.monotonic() < t_stop + RECOVER_SECS and len(moved) < len(ids):
            p = progress(cl, tags)
            for i in ids:
                if i not in moved and p[i] > p0[i]:
                    moved[i] = round(time.monotonic() - t_stop, 1)
            time.sleep(0.3)
        link_res = {}
        for i, pe in links.items():
            r = pe.wait(check=False)
            done = pe.started + r.secs - t_stop
            for line in r.out.splitlines():
                kv = dict(re.findall(r"(\w+)=(\S+)", line))
                if line.startswith("link "):
                    link_res[(i, int(kv["to"]))] = (kv.get("ok") == "1", done)
        t_links = round(max((t for _, t in link_res.values()), default=0), 1)
        recovery.update(moved=moved, links=link_res, t_links=t_links)
        ctx.say("after the injection: torture batches completed by %s within %s s; pair "
                "locks %s, all done %.1f s after the stop" % (
                    sorted(moved), moved, {"%d->%d" % k: ok for k, (ok, _) in
                                           sorted(link_res.items())}, t_links))
        stuck = [i for i in ids if i not in moved]
        bad = ["%d->%d" % k for k, (ok, _) in sorted(link_res.items()) if not ok]
        missing = ["%d->%d" % (i, j) for i in ids for j in ids
                   if i != j and (i, j) not in link_res]
        moved_all = not (stuck or bad or missing or t_links > RECOVER_SECS)
        diag = None if moved_all else cl.diagnose("links after the injection")
        expect(ctx, "links", moved_all, "links did not all move again within %d s of the end "
               "of the injection: no torture batch on %s, pair locks failed %s, not run %s, "
               "last done after %.1f s (dump: %s)" % (RECOVER_SECS, stuck, bad, missing,
                                                      t_links, diag))
        time.sleep(AFTER_SECS)
        cl.on(ids, lambda i: "touch /tmp/torture-stop-%s" % tags[i])

    try:
        totals = watched_totals(cl, ctx, pend, "allocation failures and hub resets",
                                during=during)
    finally:
        cl.on(ids, lambda i: "touch /tmp/torture-stop-%s" % tags[i], check=False)
        cl.on(inject, "faultinject disarm", check=False)
    hub1 = cl.hub.stats()
    s = sum(t for t, _ in totals.values())
    v = lvb_value(cl, 2)
    resets = int(hub1["resets"]) - int(hub0["resets"])
    retries = sum(int(x) for i in ids for x in re.findall(
        r"dlmrs-torture %s batch=\d+ rc=0 .* nomem_retries=(\d+)" % tags[i],
        cl.node(i).console_text()))
    ctx.say("torture: per node %s, sum %d, LVB %d; hub resets %d; writes retried after "
            "ENOMEM/ENOBUFS %d" % ({i: t for i, (t, _) in totals.items()}, s, v, resets,
                                   retries))
    expect(ctx, "resets", resets > 0, "the hub injected no reset")
    expect(ctx, "lvb", v == s, "LVB counter %d != sum of increments %d after allocation "
           "failures" % (v, s))

    # What was injected: exact counts from the injectors, and from the
    # stack of every logged failure (all but __GFP_NOWARN ones) where.
    classes, sites = {}, {}
    for i in inject:
        reps, _ = split_injections(cl.node(i).console_text().splitlines())
        for rep in reps:
            cls, site = classify(rep, lays[i])
            classes[cls] = classes.get(cls, 0) + 1
            if cls == "comms":
                key = "%s %s" % ({"failslab": "slab", "fail_page_alloc": "page"}
                                 [rep["injector"]], site)
                sites[key] = sites.get(key, 0) + 1
        n = counts[i]["calls"] + counts[i]["comms"]
        expect(ctx, "reports", n >= len(reps), "node %d: %d injection reports on the console "
               "but the injectors count %d" % (i, len(reps), n))
        expect(ctx, "injected", n > 0, "node %d: no allocation failed" % i)
    top = sorted(sites.items(), key=lambda kv: -kv[1])
    ctx.say("injected per node %s; logged failures by class %s; comms sites %s" % (
        counts, classes, ", ".join("%s=%d" % kv for kv in top[:16])))
    expect(ctx, "comms", classes.get("comms", 0) > 0, "no injected failure hit the comms "
           "layer: %s" % classes)
    release()
    ctx.numbers.update(increments=s, resets=resets, nomem_retries=retries,
                       injected=sum(c["calls"] + c["comms"] for c in counts.values()),
                       comms_failures=classes.get("comms", 0),
                       lock_manager_failures=classes.get("lock manager", 0),
                       recovered_s=recovery.get("t_links"))
    end_breaks(ctx)


SCENARIOS = [
    # Debug flavour only (fault injection): make check runs it there, all ours
    # (--debug-set) and in the mixed cluster with ours on nodes 2 and 3 (the
    # stock node masters the counter and has no stock peer whose messages a
    # reset could lose for good).
    ("allocfail", sc_allocfail, 420,
     {"default": False, "debug": True, "faults": ("alloc", "reset"),
      "placement": {2: (2, 3)}}),
]
