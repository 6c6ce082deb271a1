//! The container recipe (issue 19): `dist/container/Containerfile` is built with podman and run
//! here. This machine reaches no image registry, so the base is a Debian bookworm made by
//! `debootstrap` and imported into podman once (kept in podman's storage for later runs); the
//! recipe itself is the committed file, only its BASE and BINARY build arguments point at what
//! this machine has. From the image: `migrate` brings a fresh database up, `serve` (the image's
//! default command) answers /readyz, runs as the unprivileged user 10001 with its state directory
//! 0700, and `podman stop` (SIGTERM) ends it with exit status 0.
//!
//! podman runs with runc, the host network and explicit ulimits: this sandbox refuses crun's
//! cgroup setup and podman's default rlimits (higher than its own hard limits). On an ordinary
//! host none of those flags is needed; docs/OPERATIONS.md shows the plain commands.

#[path = "common/tools.rs"]
mod tools;

use tools::{free_port, tool};

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use store::testing::EmptyDb;

const BASE_IMAGE: &str = "localhost/countersign-test-base:bookworm";

/// podman with this sandbox's settings (see the module comment).
fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc"]);
    c
}

const LIMITS: [&str; 4] = ["--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096"];

fn run(mut c: Command, what: &str) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The Debian base image, made with debootstrap the first time (about a minute and a half).
fn base_image() {
    if podman().args(["image", "exists", BASE_IMAGE]).status().is_ok_and(|s| s.success()) {
        return;
    }
    let root = tempfile::tempdir().expect("dir");
    let rootfs = root.path().join("rootfs");
    let mirror = std::env::var("COUNTERSIGN_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let mut d = Command::new("debootstrap");
    d.args(["--variant=minbase", "bookworm"]).arg(&rootfs).arg(&mirror);
    run(d, "debootstrap");
    let tar = root.path().join("rootfs.tar");
    let mut t = Command::new("tar");
    t.arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".");
    run(t, "tar");
    let mut i = podman();
    i.args(["import"]).arg(&tar).arg(BASE_IMAGE);
    run(i, "podman import");
}

/// Removes the container and the image when the test ends, however it ends.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.container]).output();
        let _ = podman().args(["rmi", "-f", &self.image]).output();
    }
}

#[tokio::test]
async fn the_container_recipe_builds_migrates_serves_as_an_unprivileged_user_and_stops_cleanly() {
    // Fails (never skips) without them: Debian's podman, runc and debootstrap (.ci/run installs them).
    for t in ["podman", "runc", "debootstrap"] {
        tool(t);
    }
    base_image();

    // The build context: the committed recipe and the binary under test.
    let context = tempfile::tempdir().expect("dir");
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/container/Containerfile");
    std::fs::copy(&recipe, context.path().join("Containerfile")).expect("recipe");
    std::fs::copy(env!("CARGO_BIN_EXE_countersign"), context.path().join("countersign")).expect("binary");
    let tag = format!("localhost/countersign-test:{}", uuid::Uuid::new_v4().simple());
    let name = format!("countersign-test-{}", uuid::Uuid::new_v4().simple());
    let _cleanup = Cleanup { container: name.clone(), image: tag.clone() };
    let mut build = podman();
    build
        .args(["build", "--network=host", "--layers"])
        .args(LIMITS)
        .args(["--build-arg", &format!("BASE={BASE_IMAGE}"), "--build-arg", "BINARY=countersign"])
        .args(["-t", &tag, "-f"])
        .arg(context.path().join("Containerfile"))
        .arg(context.path());
    run(build, "podman build");

    // Migrations are a step of their own, run from the image against a fresh database.
    let db = EmptyDb::new().await;
    let mut migrate = podman();
    migrate.args(["run", "--rm", "--network=host"]).args(LIMITS).args([
        "-e",
        &format!("DATABASE_URL={}", db.url()),
        &tag,
        "migrate",
    ]);
    let out = run(migrate, "migrate in the container");
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations current"), "{out:?}");

    // The image's default command serves.
    let port = free_port();
    let mut serve = podman();
    serve.args(["run", "-d", "--name", &name, "--network=host"]).args(LIMITS).args([
        "-e",
        &format!("DATABASE_URL={}", db.url()),
        "-e",
        &format!("COUNTERSIGN_LISTEN=127.0.0.1:{port}"),
        &tag,
    ]);
    run(serve, "serve in the container");
    let logs = || {
        let o = podman().args(["logs", &name]).output().expect("logs");
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            Ok(r) if r.status() == 200 => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the container never became ready:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.expect("healthz");
    assert_eq!(health.status(), 200);

    // It runs as the image's unprivileged user, its state (keys) in a directory only it reads.
    let mut id = podman();
    id.args(["exec", &name, "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&run(id, "id").stdout).trim(), "10001");
    let mut stat = podman();
    stat.args(["exec", &name, "stat", "-c", "%u %a", "/var/lib/countersign", "/var/lib/countersign/keys"]);
    let stat = String::from_utf8_lossy(&run(stat, "stat").stdout).into_owned();
    let lines: Vec<&str> = stat.lines().collect();
    assert_eq!(lines[0], "10001 700", "{stat}");
    assert!(lines[1].starts_with("10001 7"), "{stat}");

    // SIGTERM (podman stop) drains and exits 0 well within the stop timeout.
    let mut stop = podman();
    stop.args(["stop", "-t", "30", &name]);
    run(stop, "podman stop");
    let mut code = podman();
    code.args(["inspect", "--format", "{{.State.ExitCode}}", &name]);
    let code = String::from_utf8_lossy(&run(code, "inspect").stdout).trim().to_owned();
    assert_eq!(code, "0", "the server did not exit cleanly on SIGTERM:\n{}", logs());
}
