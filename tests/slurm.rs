//! A real Slurm: a one-node cluster on this machine (munged, slurmctld, slurmd, started here and
//! stopped at the end) runs `docs/cluster/synth-cpu.sbatch` as an array of 3 with `sbatch
//! --wait`; the merged parts must equal a single-process `mam-e synth` byte for byte.
//! `scripts/test` installs `slurm-wlm` and `munge` (Debian); without them this test fails and says so.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::cli::{assert_same_tree, ok, temp_dir};

fn sh(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e} (install slurm-wlm and munge: scripts/test does)"))
}

/// The daemons of a one-node cluster, stopped when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    started_munged: bool,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        for tool in ["munged", "slurmctld", "slurmd", "sbatch", "sinfo"] {
            assert!(sh("sh", &["-c", &format!("command -v {tool}")]).status.success(), "{tool} is missing: install slurm-wlm and munge (scripts/test does)");
        }
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::create_dir_all(dir.join("spool")).unwrap();
        // munge authenticates every Slurm message; one daemon serves the machine.
        let started_munged = !sh("pgrep", &["-x", "munged"]).status.success();
        if started_munged {
            assert!(sh("install", &["-d", "-o", "munge", "-g", "munge", "-m", "755", "/run/munge"]).status.success());
            let out = sh("runuser", &["-u", "munge", "--", "munged"]);
            assert!(out.status.success(), "munged did not start: {}", String::from_utf8_lossy(&out.stderr));
        }
        let node = String::from_utf8(sh("slurmd", &["-C"]).stdout).unwrap().lines().next().expect("slurmd -C prints the node").to_string();
        let field = |name: &str| node.split_whitespace().find_map(|f| f.strip_prefix(&format!("{name}="))).and_then(|v| v.parse::<u64>().ok());
        let (cpus, memory) = (field("CPUs").expect("CPUs"), field("RealMemory").expect("RealMemory"));
        let host = String::from_utf8(sh("hostname", &["-s"]).stdout).unwrap().trim().to_string();
        let d = dir.display();
        // See ../shared/TOOLCHAIN.md, "Slurm on one machine": DefMemPerCPU lets array tasks
        // share the node; MinJobAge 16 makes `sbatch --wait` poll every 8 s.
        let conf = format!(
            "ClusterName=mame\nSlurmctldHost={host}\nSlurmUser=root\nAuthType=auth/munge\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core_Memory\nDefMemPerCPU={}\nAccountingStorageType=accounting_storage/none\n\
             JobAcctGatherType=jobacct_gather/none\nMailProg=/bin/true\nMinJobAge=16\nReturnToService=2\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\nSlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
             {node}\nPartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            memory / cpus
        );
        let conf_path = dir.join("slurm.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let cluster = Cluster { dir: dir.to_path_buf(), conf: conf_path, started_munged };
        for daemon in ["slurmctld", "slurmd"] {
            let out = cluster.command(daemon).output().unwrap();
            assert!(out.status.success(), "{daemon} did not start: {}\n{}", String::from_utf8_lossy(&out.stderr), cluster.logs());
        }
        let started = Instant::now();
        loop {
            let state = String::from_utf8(cluster.command("sinfo").args(["-h", "-o", "%T"]).output().unwrap().stdout).unwrap();
            if state.trim() == "idle" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the node is {state:?} after a minute, not idle:\n{}", cluster.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    /// A Slurm command (or daemon) using this cluster's configuration.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log"].iter().map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pid_file in ["slurmd.pid", "slurmctld.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(pid_file)) {
                let _ = sh("kill", &[pid.trim()]);
            }
        }
        if self.started_munged {
            let _ = sh("pkill", &["-x", "munged"]);
        }
    }
}

#[test]
fn the_docs_batch_script_on_a_slurm_array_gives_the_single_process_dataset() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = |name: &str| root.join("static/models").join(name).to_string_lossy().into_owned();
    let (single, sharded, merged) = (temp_dir("slurm", "single"), temp_dir("slurm", "sharded"), temp_dir("slurm", "merged"));
    let flags = "--steps 3 --lesion-steps 3";
    let (count, seed, fraction) = ("7", "21", "0.4");
    let (demo, inpaint) = (model("demo"), model("demo-inpaint"));
    let mut args = vec!["synth", "--model", &demo];
    args.extend(["--inpaint-model", &inpaint, "--count", count, "--seed", seed, "--lesion-fraction", fraction, "--steps", "3", "--lesion-steps", "3"]);
    args.extend(["--out", single.to_str().unwrap()]);
    ok(&args);

    let cluster = Cluster::start(&temp_dir("slurm", "cluster"));
    let started = Instant::now();
    let mut sbatch = cluster.command("sbatch");
    sbatch
        .args(["--wait", "--array=0-2", "--cpus-per-task=1", "--mem-per-cpu=1G"])
        .arg(format!("--output={}/task-%a.out", cluster.dir.display()))
        .arg(format!("--chdir={}", cluster.dir.display()))
        .arg(root.join("docs/cluster/synth-cpu.sbatch"))
        .envs([("MAM_E", env!("CARGO_BIN_EXE_mam-e")), ("MODEL", &demo), ("INPAINT_MODEL", &inpaint), ("COUNT", count)])
        .envs([("SEED", seed), ("LESION_FRACTION", fraction), ("BATCH_SIZE", "2"), ("SYNTH_FLAGS", flags), ("OUT", sharded.to_str().unwrap())]);
    let out = sbatch.output().unwrap();
    let task_logs = (0..3).map(|k| std::fs::read_to_string(cluster.dir.join(format!("task-{k}.out"))).unwrap_or_default()).collect::<Vec<_>>().join("\n---\n");
    assert!(out.status.success(), "sbatch --wait failed: {}\n{task_logs}\n{}", String::from_utf8_lossy(&out.stderr), cluster.logs());
    eprintln!("the array of 3 ran in {:.1} s", started.elapsed().as_secs_f64());
    for k in 0..3 {
        assert!(task_logs.contains(&format!("shard {k}/3")), "task {k} did not say its shard:\n{task_logs}");
    }
    drop(cluster);

    let parts: Vec<String> = (0..3).map(|k| sharded.join(format!("part-{k:04}-of-0003")).to_string_lossy().into_owned()).collect();
    let mut merge = vec!["synth", "merge"];
    merge.extend(parts.iter().map(String::as_str));
    merge.extend(["--out", merged.to_str().unwrap()]);
    ok(&merge);
    assert_same_tree(&single, &merged);
}
