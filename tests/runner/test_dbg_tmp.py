import json, subprocess, signal, time, os, random
from interleaf.storage.store import ObjectStore
from interleaf.storage.checkpoint import ObjectStoreSaver
from tests.runner.graphs import chain_graph, count_lines, seeds_file
from tests.runner.test_resume import _interleaf, _env, REPO

def test_dbg(tmp_path, s3_env):
    seeds = seeds_file(tmp_path / "seeds.jsonl", 20)
    for attempt in range(8):
        counter = tmp_path / f"calls{attempt}.txt"
        graph = chain_graph(tmp_path / f"g{attempt}.yaml", counter, delay=0.04, concurrency=4)
        uri = f"s3://{s3_env.create_bucket()}/runs/kill"
        out = tmp_path / f"out{attempt}"
        args = [str(graph), "--seeds", str(seeds), "--out", str(out), "--store", uri]
        proc = subprocess.Popen(_interleaf(args), cwd=REPO, env=_env())
        k = random.randint(10, 45)
        while count_lines(counter) < k: time.sleep(0.005)
        proc.send_signal(signal.SIGKILL); proc.wait()
        store = ObjectStore(uri)
        run_id = json.loads((out/"run.json").read_text())["run_id"]
        saver = ObjectStoreSaver(store)
        before = {}
        for i in range(20):
            sid = f"seed-{i:03d}"
            cfg = {"configurable": {"thread_id": f"{run_id}:{sid}"}}
            hist = list(saver.list(cfg))
            before[sid] = [(h.metadata.get("step"), sorted(h.checkpoint["channel_values"]), [(w[0][:8], w[1]) for w in h.pending_writes]) for h in hist]
            st = store.get_json_or_none(f"status/{sid}.json")
            before[sid].append(("status", st and st["status"], st and len(store.get_json(f"dialogues/{sid}.json")["nodes"])))
        subprocess.run(_interleaf(args), cwd=REPO, env=_env(), capture_output=True, text=True)
        bad = [k for k in store.list("dialogues") if len(store.get_json(k)["nodes"]) != 3]
        print("attempt", attempt, "kill", k, "bad", bad)
        for b in bad:
            sid = b.split("/")[1][:-5]
            print(sid, "BEFORE", *before[sid], sep="\n  ")
            cfg = {"configurable": {"thread_id": f"{run_id}:{sid}"}}
            print("  AFTER", [(h.metadata.get("step"), h.metadata.get("source"), sorted(h.checkpoint["channel_values"]), [(w[0][:8], w[1]) for w in h.pending_writes]) for h in saver.list(cfg)])
        if bad:
            assert False
