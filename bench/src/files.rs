//! Streaming a large file through Countersign's HTTP API with encryption on, against a raw `cp`
//! of the same file on the same disk, in the same run (issue 16).
//!
//! A real `countersign serve` process on loopback keeps its blobs (AES-256-GCM ciphertext, 64 KiB
//! chunks) under its data directory; the source file and `cp`'s copies live in that same
//! directory, so both sides read and write the same disk (and, as for `cp`, whatever the page
//! cache holds: neither side syncs). Per round, in alternating order:
//!
//! * `cp SOURCE COPY` (a child process, timed from spawn to exit);
//! * an upload: `POST /api/v1/documents/{id}/attachments/files` over a plain HTTP/1.1 connection,
//!   the body streamed from the source file with `Content-Length`, timed from connecting to the
//!   last byte of the 201 answer (so it includes the database rows, the audit event and the
//!   SHA-256 the server computes; the answer's size and SHA-256 are checked);
//! * a download: a link from `POST /api/v1/attachments/{id}/links`, then `GET` of it, timed from
//!   sending to the last byte (every byte compared with the source).
//!
//! Then `--downloads` more full downloads (each with its own link) for the time to first byte:
//! from sending the `GET` to the first byte of the body, client-measured (an upper bound of the
//! server's). The server's `VmRSS` is sampled every 5 ms on a thread of its own from before the
//! first transfer to after the last; growth = the peak minus the idle value just before.
//!
//! Targets (issue 16): upload and download each >= 70 % of `cp`'s throughput; time to first byte
//! of a download <= 5 ms; RSS growth while streaming <= 16 MiB.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use identity::directory::{departments, memberships, tenants, users};
use identity::{DepartmentCode, EmailAddress, JoinPolicy, Role, Slug};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use store::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::server::{self, RssSampler, Server, data_dir, load_average, percentile_ms, verdict, vm_rss};

/// (`Parser` as well as `Args`: the suite builds these from argument lists.)
#[derive(clap::Parser)]
pub struct Args {
    /// Size of the file, in MiB.
    #[arg(long, default_value_t = 100)]
    size_mib: u64,
    /// Rounds of cp / upload / download (alternating which goes first).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Further full downloads for the time to first byte (p50/p99 over these and the rounds').
    #[arg(long, default_value_t = 30)]
    downloads: u32,
    /// The server binary (default: `countersign` next to this executable).
    #[arg(long)]
    server: Option<PathBuf>,
}

const PASSWORD: &str = "maple harbour signal 2291";
const ORG: &str = "bench-files";
const RAISER: &str = "raiser@bench.example";
const RATIO_TARGET: f64 = 0.70;
const TTFB_TARGET_MS: f64 = 5.0;
const RSS_TARGET_MIB: f64 = 16.0;
const MIB: f64 = 1024.0 * 1024.0;

/// The organisation, one department and a staff member who raises a draft voucher (which they
/// may attach files to).
async fn seed(db: &TestDb) -> anyhow::Result<Uuid> {
    let who = audit::Who::system("bench:files");
    let mut b = db.store.bypass("bench", "seed the files benchmark").await?;
    let t = tenants::create(
        &mut b,
        &who,
        &tenants::NewTenant {
            slug: Slug::parse(ORG)?,
            name: "Files Bench".into(),
            allowed_email_domains: vec!["bench.example".into()],
            join_policy: JoinPolicy::AdminApproval,
        },
    )
    .await?;
    b.commit().await?;
    let mut tx = db.store.tenant_tx(t.id).await?;
    let dept = departments::create(&mut tx, &who, &DepartmentCode::parse("OPS")?, "Operations").await?;
    tx.commit().await?;
    let hasher = identity::signin::passwords::Hasher::new(1)?;
    let mut g = db.store.global_tx().await?;
    let u = users::create(&mut g, &who, &EmailAddress::parse(RAISER)?, "Rae Raiser").await?;
    identity::signin::account::set_password(&mut g, &who, &hasher, u.id, &secrecy::SecretString::from(PASSWORD), &[])
        .await?;
    g.commit().await?;
    let mut tx = db.store.tenant_tx(t.id).await?;
    let m = memberships::NewMembership {
        user_id: u.id,
        role: Role::Staff,
        department_id: Some(dept.id),
        valid_until: None,
    };
    memberships::add(&mut tx, &who, &m).await?;
    tx.commit().await?;
    Ok(dept.id)
}

/// A PDF-looking file (the sniffer checks the header) of random bytes; returns its content too
/// (to check downloads byte for byte) and its SHA-256.
fn write_source(path: &Path, size: usize) -> anyhow::Result<(Vec<u8>, String)> {
    let mut content = vec![0u8; size];
    rand::rng().fill_bytes(&mut content);
    let head = b"%PDF-1.7\n";
    let n = head.len().min(size);
    content[..n].copy_from_slice(&head[..n]);
    std::fs::write(path, &content)?;
    let sha = hex::encode(Sha256::digest(&content));
    Ok((content, sha))
}

/// An HTTP/1.1 answer read to the end of a `Connection: close` exchange.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of the answer's head")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("no status in {head}"))?;
    let mut rest = &raw[end + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n").context("a chunk without its size line")?;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line]).split(';').next().unwrap_or("").trim(),
                16,
            )?;
            rest = &rest[line + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(..size).context("a chunk cut short")?);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body
    } else {
        rest.to_vec()
    };
    Ok(Answer { status, body })
}

/// Uploads `path` (`size` bytes) as a new attachment of `doc`, the body streamed from the file
/// over a plain HTTP/1.1 connection; returns the answer's JSON and the time to its last byte.
async fn upload(
    addr: &str,
    token: &str,
    doc: &str,
    path: &Path,
    size: u64,
) -> anyhow::Result<(serde_json::Value, Duration)> {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let head = format!(
        "POST /api/v1/documents/{doc}/attachments/files?name=bench.pdf HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/pdf\r\nContent-Length: {size}\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let file = tokio::fs::File::open(path).await?;
    let mut reader = tokio::io::BufReader::with_capacity(1 << 20, file);
    let sent = tokio::io::copy_buf(&mut reader, &mut s).await.context("streaming the upload")?;
    s.flush().await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let took = started.elapsed();
    if sent != size {
        bail!("sent {sent} bytes of {size}");
    }
    let a = parse_answer(&raw)?;
    if a.status != 201 {
        bail!("the upload answered {}: {}", a.status, String::from_utf8_lossy(&a.body));
    }
    Ok((serde_json::from_slice(&a.body)?, took))
}

/// Mints a link for the attachment and downloads it whole, comparing every byte with `content`;
/// returns the time to the first body byte and to the last.
async fn download(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    attachment: &str,
    content: &[u8],
) -> anyhow::Result<(Duration, Duration)> {
    let r = http
        .post(format!("{base}/api/v1/attachments/{attachment}/links"))
        .bearer_auth(token)
        .json(&serde_json::json!({"disposition": "attachment"}))
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::CREATED {
        bail!("minting a link answered {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    let link: serde_json::Value = r.json().await?;
    let url = format!("{base}{}", link["url"].as_str().context("no url in the minted link")?);
    let started = Instant::now();
    let mut r = http.get(&url).bearer_auth(token).send().await?;
    if r.status() != reqwest::StatusCode::OK {
        bail!("the download answered {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    let mut first = None;
    let mut at = 0usize;
    while let Some(chunk) = r.chunk().await? {
        if first.is_none() && !chunk.is_empty() {
            first = Some(started.elapsed());
        }
        let end = at + chunk.len();
        if content.get(at..end) != Some(&chunk[..]) {
            bail!("the download differs from the file in bytes {at}..{end}");
        }
        at = end;
    }
    let took = started.elapsed();
    if at != content.len() {
        bail!("the download ended after {at} of {} bytes", content.len());
    }
    Ok((first.context("an empty download")?, took))
}

fn cp(from: &Path, to: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = std::process::Command::new("cp").arg(from).arg(to).status().context("running cp")?;
    let took = started.elapsed();
    if !status.success() {
        bail!("cp failed: {status}");
    }
    std::fs::remove_file(to)?;
    Ok(took)
}

/// What the cipher and the hash alone cost, on one thread with no I/O: `content` sealed and
/// hashed (an upload's work) and then opened and hashed (a download's), 64 KiB chunks, with the
/// server's own `files::crypto`. Any encrypted path that records a SHA-256 pays at least this.
fn crypto_alone(content: &[u8]) -> anyhow::Result<(Duration, Duration)> {
    use files::crypto::{BlobCipher, CHUNK, Header, TAG};
    let key = files::DataKey::unstored(Uuid::new_v4());
    let cipher = BlobCipher::new(&key, Uuid::new_v4(), &Header::fresh(1))?;
    let pieces = content.chunks(CHUNK).count();
    // Sealed once untimed (for the opening pass), then timed into one reused buffer, as the
    // server's upload reuses its memory, so neither pass pays first-touch page faults.
    let mut sealed = vec![0u8; content.len() + pieces * TAG];
    let mut at = 0;
    for (i, piece) in content.chunks(CHUNK).enumerate() {
        let out = &mut sealed[at..at + piece.len() + TAG];
        out[..piece.len()].copy_from_slice(piece);
        cipher.seal(i as u64, i + 1 == pieces, out)?;
        at += piece.len() + TAG;
    }
    let mut buf = vec![0u8; CHUNK + TAG];
    let started = Instant::now();
    let mut h = Sha256::new();
    for (i, piece) in content.chunks(CHUNK).enumerate() {
        h.update(piece);
        let out = &mut buf[..piece.len() + TAG];
        out[..piece.len()].copy_from_slice(piece);
        cipher.seal(i as u64, i + 1 == pieces, out)?;
    }
    std::hint::black_box((h.finalize(), &buf));
    let seal = started.elapsed();
    let started = Instant::now();
    let mut h = Sha256::new();
    for (i, piece) in sealed.chunks_mut(CHUNK + TAG).enumerate() {
        cipher.open(i as u64, i + 1 == pieces, piece)?;
        h.update(&piece[..piece.len() - TAG]);
    }
    std::hint::black_box(h.finalize());
    Ok((seal, started.elapsed()))
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { 0.0 } else { s[s.len() / 2] }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = server::binary(args.server.as_deref())?;
    let size = args.size_mib.max(1) * 1024 * 1024;
    println!(
        "files: a {} MiB file, {} rounds, {} more downloads, load average {}",
        args.size_mib.max(1),
        args.rounds.max(1),
        args.downloads,
        load_average()
    );
    let db = TestDb::try_with_pool(4).await.context("creating the benchmark database")?;
    let dept = seed(&db).await?;
    let data = data_dir("files")?;
    let source = data.join("source.pdf");
    let copy = data.join("cp-copy.pdf");
    let (content, sha) = write_source(&source, usize::try_from(size)?)?;
    // The limit leaves room for the file: the server refuses larger bodies while they stream.
    let limit = (args.size_mib.max(1) + 1).to_string();
    let server = Server::start_with(&bin, "serve", &db, &data, &["--max-upload-mib", &limit]).await?;
    let result = measure(&args, &server, dept, &source, &copy, size, &content, &sha).await;
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&data);
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    server: &Server,
    dept: Uuid,
    source: &Path,
    copy: &Path,
    size: u64,
    content: &[u8],
    sha: &str,
) -> anyhow::Result<()> {
    let base = &server.base;
    let addr = base.trim_start_matches("http://").to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let token = server::sign_in(&http, base, ORG, RAISER, PASSWORD).await?;
    let r = http
        .post(format!("{base}/api/v1/documents"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "kind": "voucher", "department_id": dept, "title": "Files bench", "document_date": "2026-03-10",
            "currency": "EUR", "lines": [{"description": "scans", "amount_minor": 1000}],
        }))
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::CREATED {
        bail!("raising the draft answered {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    let doc: serde_json::Value = r.json().await?;
    let doc = doc["id"].as_str().context("no document id")?.to_owned();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = vm_rss(server.pid)?;
    println!("files: server pid {} idle VmRSS {:.1} MiB before the first transfer", server.pid, idle as f64 / MIB);
    let sampler = RssSampler::start(server.pid, Duration::from_millis(5));

    let mut ttfb = Vec::new();
    let (mut up_ratio, mut down_ratio) = (Vec::new(), Vec::new());
    let mut ceiling = Vec::new();
    let mut attachment = String::new();
    for round in 0..args.rounds.max(1) {
        let cp_first = round % 2 == 0;
        let mut cp_took = None;
        if cp_first {
            cp_took = Some(cp(source, copy)?);
        }
        let (answer, up) = upload(&addr, &token, &doc, source, size).await?;
        let got_sha = answer["file"]["sha256"].as_str().unwrap_or_default();
        if answer["file"]["size"].as_u64() != Some(size) || !got_sha.eq_ignore_ascii_case(sha) {
            bail!("the server recorded another file: {answer}");
        }
        attachment = answer["id"].as_str().context("no attachment id")?.to_owned();
        let (first, down) = download(&http, base, &token, &attachment, content).await?;
        ttfb.push(u64::try_from(first.as_micros()).unwrap_or(u64::MAX));
        if !cp_first {
            cp_took = Some(cp(source, copy)?);
        }
        let cp_took = cp_took.context("cp did not run")?;
        let (c, u, d) = (mib_s(size, cp_took), mib_s(size, up), mib_s(size, down));
        println!(
            "  round {}: cp {c:.0} MiB/s ({:.0} ms); upload {u:.0} MiB/s ({:.0} ms) = {:.1} %; \
             download {d:.0} MiB/s ({:.0} ms, first byte {:.2} ms) = {:.1} %; load average {}",
            round + 1,
            cp_took.as_secs_f64() * 1000.0,
            up.as_secs_f64() * 1000.0,
            u / c * 100.0,
            down.as_secs_f64() * 1000.0,
            first.as_secs_f64() * 1000.0,
            d / c * 100.0,
            load_average()
        );
        up_ratio.push(u / c);
        down_ratio.push(d / c);
        let (seal, open) = crypto_alone(content)?;
        let (s, o) = (mib_s(size, seal), mib_s(size, open));
        println!(
            "           cipher and hash alone, one thread, no I/O: seal+SHA-256 {s:.0} MiB/s = {:.1} % of cp; \
             open+SHA-256 {o:.0} MiB/s = {:.1} % of cp",
            s / c * 100.0,
            o / c * 100.0
        );
        ceiling.push((s / c, o / c));
    }
    let mut more = Vec::new();
    for _ in 0..args.downloads {
        let (first, down) = download(&http, base, &token, &attachment, content).await?;
        ttfb.push(u64::try_from(first.as_micros()).unwrap_or(u64::MAX));
        more.push(mib_s(size, down));
    }
    let (peak, samples) = sampler.stop();
    let after = vm_rss(server.pid)?;
    ttfb.sort_unstable();
    if !more.is_empty() {
        println!(
            "  {} more downloads: median {:.0} MiB/s (min {:.0}, max {:.0})",
            more.len(),
            median(&more),
            more.iter().copied().fold(f64::INFINITY, f64::min),
            more.iter().copied().fold(0.0, f64::max)
        );
    }
    let growth = peak.saturating_sub(idle) as f64 / MIB;
    println!(
        "  server VmRSS: idle {:.1} MiB, peak {:.1} MiB while streaming ({samples} samples), {:.1} MiB after",
        idle as f64 / MIB,
        peak as f64 / MIB,
        after as f64 / MIB
    );

    let (up, down) = (median(&up_ratio), median(&down_ratio));
    let (p50, p99) = (percentile_ms(&ttfb, 0.50), percentile_ms(&ttfb, 0.99));
    println!();
    println!("  {:<52} {:>16} {:>10}  verdict", "figure (median of the rounds)", "measured", "target");
    println!(
        "  {:<52} {:>16} {:>10}  {}",
        "upload throughput vs cp, same file, same disk",
        format!("{:.1} %", up * 100.0),
        format!(">= {:.0} %", RATIO_TARGET * 100.0),
        verdict(up >= RATIO_TARGET)
    );
    println!(
        "  {:<52} {:>16} {:>10}  {}",
        "download throughput vs cp",
        format!("{:.1} %", down * 100.0),
        format!(">= {:.0} %", RATIO_TARGET * 100.0),
        verdict(down >= RATIO_TARGET)
    );
    println!(
        "  {:<52} {:>16} {:>10}  {}",
        format!("download time to first byte, p99 of {} (p50 {p50:.2} ms)", ttfb.len()),
        format!("{p99:.2} ms"),
        format!("<= {TTFB_TARGET_MS} ms"),
        verdict(p99 <= TTFB_TARGET_MS)
    );
    println!(
        "  {:<52} {:>16} {:>10}  {}",
        "server RSS growth while streaming (peak - idle)",
        format!("{growth:.1} MiB"),
        format!("<= {RSS_TARGET_MIB} MiB"),
        verdict(growth <= RSS_TARGET_MIB)
    );
    let seal_alone = median(&ceiling.iter().map(|c| c.0).collect::<Vec<_>>());
    let open_alone = median(&ceiling.iter().map(|c| c.1).collect::<Vec<_>>());
    println!(
        "  (the cipher and SHA-256 alone, one thread, no I/O, reach {:.1} % of cp sealing and {:.1} % opening: \
         the ceiling of one core; the server spreads each transfer over two threads, on a machine whose other \
         core also runs the client)",
        seal_alone * 100.0,
        open_alone * 100.0
    );
    println!("  load average at the end: {}", load_average());
    Ok(())
}
