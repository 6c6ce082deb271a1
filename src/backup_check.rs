//! `countersign admin backup-check`: is a WAL archive complete enough to restore from? From the
//! base backup's start segment to the newest archived one, every segment of the right timeline
//! must be there, whole (the WAL segment size) and really the segment its name says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

/// Exit status when the archive cannot restore the base backup to its newest segment: a
/// segment missing, truncated or not the segment its name says, or a timeline history missing.
pub const INCOMPLETE: u8 = 5;
/// Exit status when the archive is complete but `pg_verifybackup` rejected the base backup.
pub const BACKUP_INVALID: u8 = 6;

/// Bytes of a WAL page's long header up to and including `xlp_xlog_blcksz`.
const LONG_HEADER: usize = 40;
/// `XLP_LONG_HEADER` in `xlp_info`: the first page of every segment carries it.
const XLP_LONG_HEADER: u16 = 0x0002;
/// Longest range of segments examined (16 TiB of 16 MiB segments): a longer one is a name error.
const MAX_RANGE: u64 = 1 << 20;
/// Missing segments listed by name (the count is always complete).
const LISTED: usize = 50;

/// A WAL file name: a timeline and a segment number (the number needs the segment size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Name {
    tli: u32,
    log: u32,
    seg: u32,
}

impl Name {
    fn parse(s: &str) -> Option<Self> {
        if s.len() != 24 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let part = |i: usize| u32::from_str_radix(&s[i..i + 8], 16).ok();
        Some(Self { tli: part(0)?, log: part(8)?, seg: part(16)? })
    }

    fn segno(self, size: u64) -> u64 {
        u64::from(self.log) * per_log(size) + u64::from(self.seg)
    }
}

fn per_log(size: u64) -> u64 {
    0x1_0000_0000 / size
}

fn segment_name(tli: u32, segno: u64, size: u64) -> String {
    format!("{tli:08X}{:08X}{:08X}", segno / per_log(size), segno % per_log(size))
}

/// `X/Y` as PostgreSQL prints a WAL location.
fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// What the archive directory holds, by kind of file.
#[derive(Default)]
struct Archive {
    /// Whole segments: name → bytes.
    segments: BTreeMap<Name, u64>,
    /// `.partial` segments (the end of a timeline archived at promotion; never restored).
    partial: BTreeSet<Name>,
    /// Backup history files (`<segment>.<offset>.backup`): file name → contents.
    backups: BTreeMap<String, String>,
    /// Timeline history files present (`<tli>.history`).
    histories: BTreeSet<u32>,
    /// Files that are none of these (e.g. compressed segments, which this check does not read).
    other: Vec<String>,
}

fn read_archive(dir: &Path) -> anyhow::Result<Archive> {
    let mut a = Archive::default();
    let entries = std::fs::read_dir(dir).with_context(|| format!("--archive {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("--archive {}", dir.display()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata().with_context(|| format!("{}", entry.path().display()))?;
        if !meta.is_file() {
            a.other.push(file);
            continue;
        }
        if let Some(n) = Name::parse(&file) {
            a.segments.insert(n, meta.len());
        } else if let Some(n) = file.strip_suffix(".partial").and_then(Name::parse) {
            a.partial.insert(n);
        } else if file.ends_with(".backup") && file.len() == 24 + 1 + 8 + 7 && Name::parse(&file[..24]).is_some() {
            let text = std::fs::read_to_string(entry.path()).with_context(|| format!("{}", entry.path().display()))?;
            a.backups.insert(file, text);
        } else if let Some(t) =
            file.strip_suffix(".history").filter(|t| t.len() == 8).and_then(|t| u32::from_str_radix(t, 16).ok())
        {
            a.histories.insert(t);
        } else {
            a.other.push(file);
        }
    }
    a.other.sort();
    Ok(a)
}

/// A segment's first page header: (`xlp_info`, `xlp_pageaddr`, `xlp_seg_size`), if it has one.
fn long_header(path: &Path) -> Option<(u16, u64, u32)> {
    use std::io::Read;
    let mut buf = [0u8; LONG_HEADER];
    std::fs::File::open(path).ok()?.read_exact(&mut buf).ok()?;
    // PostgreSQL writes WAL in the machine's byte order; every platform it runs on here is little-endian.
    let info = u16::from_le_bytes([buf[2], buf[3]]);
    let pageaddr = u64::from_le_bytes(buf[8..16].try_into().ok()?);
    let seg_size = u32::from_le_bytes(buf[32..36].try_into().ok()?);
    Some((info, pageaddr, seg_size))
}

/// The WAL segment size: the one the archived segments' headers declare (the newest segment
/// whose header reads as one and names a valid size).
fn segment_size(dir: &Path, a: &Archive) -> Option<u64> {
    a.segments.keys().rev().find_map(|n| {
        let (info, _, size) = long_header(&dir.join(segment_name_raw(*n)))?;
        let size = u64::from(size);
        (info & XLP_LONG_HEADER != 0 && size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size)).then_some(size)
    })
}

fn segment_name_raw(n: Name) -> String {
    format!("{:08X}{:08X}{:08X}", n.tli, n.log, n.seg)
}

/// Where the restore starts (and the base backup's end, which must be reached to be consistent).
struct Start {
    tli: u32,
    lsn: u64,
    stop: Option<u64>,
    from: String,
}

/// `START WAL LOCATION: 0/2000028 (file …)` style lines of a backup label or backup history file.
fn label_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_owned())
}

fn from_label(text: &str, from: String) -> Option<Start> {
    let lsn = parse_lsn(label_field(text, "START WAL LOCATION:")?.split_whitespace().next()?)?;
    let tli = label_field(text, "START TIMELINE:").and_then(|t| t.parse().ok()).unwrap_or(1);
    let stop = label_field(text, "STOP WAL LOCATION:").and_then(|s| parse_lsn(s.split_whitespace().next()?));
    Some(Start { tli, lsn, stop, from })
}

/// The base backup's start (its `backup_label`, else its `backup_manifest` "WAL-Ranges") and end.
fn from_base_backup(base: &Path) -> anyhow::Result<Start> {
    let label = std::fs::read_to_string(base.join("backup_label")).ok();
    let manifest: Option<Value> =
        std::fs::read(base.join("backup_manifest")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let ranges = manifest.as_ref().and_then(|m| m["WAL-Ranges"].as_array().cloned()).unwrap_or_default();
    let range_lsn = |r: Option<&Value>, k: &str| r.and_then(|r| r[k].as_str()).and_then(parse_lsn);
    // WAL-Ranges lists the newest timeline first.
    let stop = range_lsn(ranges.first(), "End-LSN");
    if let Some(text) = label {
        let mut s = from_label(&text, format!("{}/backup_label", base.display()))
            .with_context(|| format!("{}/backup_label has no START WAL LOCATION", base.display()))?;
        s.stop = s.stop.or(stop);
        return Ok(s);
    }
    let oldest = ranges.last();
    match (range_lsn(oldest, "Start-LSN"), oldest.and_then(|r| r["Timeline"].as_u64())) {
        (Some(lsn), Some(tli)) => Ok(Start {
            tli: u32::try_from(tli).context("backup_manifest: WAL-Ranges timeline")?,
            lsn,
            stop,
            from: format!("{}/backup_manifest", base.display()),
        }),
        _ => anyhow::bail!(
            "--base-backup {}: neither backup_label nor a backup_manifest with WAL-Ranges (a plain-format \
             pg_basebackup directory has both)",
            base.display()
        ),
    }
}

/// The timelines a restore to `target` follows: (timeline, first segment number on it), oldest
/// first, from `<target>.history` (`parent<TAB>switch LSN<TAB>reason` lines).
fn timeline_path(history: &str, target: u32, size: u64) -> Vec<(u32, u64)> {
    let mut path = Vec::new();
    let mut begin = 0;
    for line in history.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut f = line.split_whitespace();
        let (Some(tli), Some(lsn)) = (f.next().and_then(|t| t.parse().ok()), f.next().and_then(parse_lsn)) else {
            continue;
        };
        path.push((tli, begin));
        begin = lsn / size;
    }
    path.push((target, begin));
    path
}

/// The result of a check: every finding, and what it means for the exit status.
struct Report {
    json: Value,
    text: Vec<String>,
    incomplete: bool,
    backup_invalid: bool,
}

/// `pg_verifybackup` from the newest `<root>/*/bin` (Debian's `/usr/lib/postgresql/<major>/bin`),
/// else from `PATH`.
fn find_pg_verifybackup(roots: &[PathBuf], path_var: Option<&str>) -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for root in roots {
        for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let bin = e.path().join("bin/pg_verifybackup");
            if bin.is_file() {
                found.push((e.file_name().to_string_lossy().parse().unwrap_or(0), bin));
            }
        }
    }
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .or_else(|| path_var?.split(':').map(|d| Path::new(d).join("pg_verifybackup")).find(|p| p.is_file()))
}

/// Runs `pg_verifybackup` on the base backup, reading WAL from the archive; never silent.
fn verify_backup(base: Option<&Path>, archive: &Path, tool: Option<PathBuf>) -> Value {
    let Some(base) = base else {
        return json!({"status": "skipped", "detail": "skipped: no --base-backup given"});
    };
    if !base.join("backup_manifest").is_file() {
        return json!({"status": "skipped", "detail": "skipped: the base backup has no backup_manifest"});
    }
    let Some(tool) = tool else {
        return json!({"status": "skipped",
            "detail": "skipped: pg_verifybackup not found (looked in /usr/lib/postgresql/*/bin and PATH)"});
    };
    let out = std::process::Command::new(&tool).arg("--wal-directory").arg(archive).arg(base).output();
    match out {
        Ok(o) => {
            let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            let said = said.trim().to_owned();
            let status = if o.status.success() { "passed" } else { "failed" };
            json!({"status": status, "tool": tool, "detail": said})
        }
        Err(e) => json!({"status": "failed", "tool": tool, "detail": format!("cannot run {}: {e}", tool.display())}),
    }
}

#[allow(clippy::too_many_lines)]
fn check(archive_dir: &Path, base: Option<&Path>, verifier: Option<PathBuf>) -> anyhow::Result<Report> {
    let a = read_archive(archive_dir)?;
    let mut text = Vec::new();
    let mut problems: Vec<Value> = Vec::new();
    let fail = |problems: &mut Vec<Value>, text: &mut Vec<String>, kind: &str, segment: &str, detail: String| {
        let at = if segment.is_empty() { String::new() } else { format!("{segment}: ") };
        text.push(format!("{:<10} {at}{detail}", kind.to_uppercase()));
        problems.push(json!({"kind": kind, "segment": segment, "detail": detail}));
    };
    let start =
        match base {
            Some(b) => Some(from_base_backup(b)?),
            // The newest base backup the archive knows of (pg_basebackup archives a history file).
            None => a.backups.iter().next_back().and_then(|(name, text)| {
                from_label(text, format!("{name} (the archive's newest backup history file)"))
            }),
        };
    let Some(size) = segment_size(archive_dir, &a) else {
        let detail = "the archive holds no WAL segment with a readable header".to_owned();
        fail(&mut problems, &mut text, "empty", "", detail);
        let pg = verify_backup(base, archive_dir, verifier);
        text.push(format!("pg_verifybackup: {}", pg["detail"].as_str().unwrap_or_default()));
        text.push("INCOMPLETE: no WAL segment to restore from".into());
        let json = json!({"complete": false, "archive": archive_dir, "problems": problems, "pg_verifybackup": pg});
        return Ok(Report { json, text, incomplete: true, backup_invalid: false });
    };

    // The timeline a restore ends on: the newest with whole segments; and the path to it.
    let target = a.segments.keys().map(|n| n.tli).max().unwrap_or(1);
    let history =
        if target > 1 { std::fs::read_to_string(archive_dir.join(format!("{target:08X}.history"))).ok() } else { None };
    let path = timeline_path(history.as_deref().unwrap_or(""), target, size);
    let tli_for = |segno: u64| path.iter().rev().find(|(_, b)| *b <= segno).map_or(target, |(t, _)| *t);
    let on_path: BTreeSet<u32> = path.iter().map(|(t, _)| *t).collect();

    // Segments of a timeline the restore does not take at that point (an abandoned branch) do not count.
    let newest =
        a.segments.keys().map(|n| (n.tli, n.segno(size))).filter(|&(t, s)| t == tli_for(s)).map(|(_, s)| s).max();
    let newest = newest.unwrap_or(0);
    let (first, start_from) = match &start {
        Some(s) => (s.lsn / size, s.from.clone()),
        None => {
            let oldest = a
                .segments
                .keys()
                .map(|n| (n.tli, n.segno(size)))
                .filter(|&(t, s)| t == tli_for(s))
                .map(|(_, s)| s)
                .min();
            (oldest.unwrap_or(0), "the oldest archived segment (no --base-backup and no backup history file)".into())
        }
    };
    let stop = start.as_ref().and_then(|s| s.stop).map(|l| l / size);
    let last = newest.max(stop.unwrap_or(0)).max(first);
    if last - first > MAX_RANGE {
        anyhow::bail!(
            "--archive {}: segments {first}..{last} span more than {MAX_RANGE}: wrong file names?",
            archive_dir.display()
        );
    }
    if let Some(s) = &start
        && s.tli != tli_for(first)
        && !on_path.contains(&s.tli)
    {
        let detail = format!(
            "the base backup is on timeline {}, which the archive's timeline {target} does not descend from",
            s.tli
        );
        fail(&mut problems, &mut text, "timeline", "", detail);
    }

    // History files: every timeline after the first that the restore passes through.
    for &t in on_path.iter().filter(|&&t| t > 1) {
        let needed = path.iter().any(|&(pt, b)| pt == t && b <= last);
        if needed && !a.histories.contains(&t) {
            fail(
                &mut problems,
                &mut text,
                "history",
                &format!("{t:08X}.history"),
                "missing: a restore cannot follow this timeline".into(),
            );
        }
    }

    let (mut present, mut missing) = (0u64, Vec::new());
    let mut missing_count = 0u64;
    for segno in first..=last {
        let tli = tli_for(segno);
        let name = segment_name(tli, segno, size);
        let key = Name::parse(&name).context("segment name")?;
        let Some(&len) = a.segments.get(&key) else {
            missing_count += 1;
            if missing.len() < LISTED {
                missing.push(name.clone());
            }
            let partial =
                if a.partial.contains(&key) { " (only a .partial copy, which a restore does not use)" } else { "" };
            if missing_count <= LISTED as u64 {
                fail(&mut problems, &mut text, "missing", &name, format!("not in the archive{partial}"));
            }
            continue;
        };
        present += 1;
        if len != size {
            fail(&mut problems, &mut text, "truncated", &name, format!("{len} bytes, a segment is {size}"));
            continue;
        }
        match long_header(&archive_dir.join(&name)) {
            Some((info, pageaddr, seg))
                if info & XLP_LONG_HEADER != 0 && pageaddr == segno * size && u64::from(seg) == size => {}
            _ => fail(
                &mut problems,
                &mut text,
                "misplaced",
                &name,
                "its first page is not this segment's (another file under this name?)".into(),
            ),
        }
    }
    let first_missing = missing.first().cloned();
    let incomplete = !problems.is_empty();

    let pg = verify_backup(base, archive_dir, verifier);
    let backup_invalid = pg["status"] == "failed";
    let mut head = vec![
        format!("archive {}: WAL segment size {} MiB, timeline {target}", archive_dir.display(), size >> 20),
        format!("from {} ({start_from})", segment_name(tli_for(first), first, size)),
        format!("to   {} (newest archived segment)", segment_name(tli_for(last), last, size)),
        format!("{} segment(s) needed, {present} present, {missing_count} missing", last - first + 1),
    ];
    if !a.partial.is_empty() {
        head.push(format!(
            "{} .partial segment(s) (ends of earlier timelines; not restored, not needed)",
            a.partial.len()
        ));
    }
    if !a.other.is_empty() {
        head.push(format!("{} other file(s) not examined: {}", a.other.len(), a.other.join(", ")));
    }
    head.append(&mut text);
    head.push(format!(
        "pg_verifybackup: {} {}",
        pg["status"].as_str().unwrap_or_default(),
        pg["detail"].as_str().unwrap_or_default()
    ));
    if let Some(m) = &first_missing {
        head.push(format!("INCOMPLETE: first missing segment {m} ({missing_count} missing)"));
    } else if incomplete {
        head.push("INCOMPLETE: see the problems above".into());
    } else if backup_invalid {
        head.push("ARCHIVE COMPLETE, but pg_verifybackup rejected the base backup".into());
    } else {
        head.push("COMPLETE".into());
    }
    let json = json!({
        "complete": !incomplete && !backup_invalid,
        "archive": archive_dir,
        "base_backup": base,
        "wal_segment_size": size,
        "timeline": target,
        "start_segment": segment_name(tli_for(first), first, size),
        "start_from": start_from,
        "end_segment": segment_name(tli_for(last), last, size),
        "backup_stop_segment": stop.map(|s| segment_name(tli_for(s), s, size)),
        "segments_needed": last - first + 1,
        "segments_present": present,
        "missing_count": missing_count,
        "first_missing": first_missing,
        "missing": missing,
        "problems": problems,
        "partial": a.partial.iter().map(|n| format!("{}.partial", segment_name_raw(*n))).collect::<Vec<_>>(),
        "backup_history_files": a.backups.keys().collect::<Vec<_>>(),
        "history_files": a.histories.iter().map(|t| format!("{t:08X}.history")).collect::<Vec<_>>(),
        "not_examined": a.other,
        "pg_verifybackup": pg,
    });
    Ok(Report { json, text: head, incomplete, backup_invalid })
}

/// `countersign admin backup-check`: prints the findings (text, or JSON with `--json`); exit 0
/// when complete, [`INCOMPLETE`] or [`BACKUP_INVALID`] otherwise.
pub fn run(archive: &Path, base: Option<&Path>, as_json: bool) -> anyhow::Result<ExitCode> {
    let tool = find_pg_verifybackup(&[PathBuf::from("/usr/lib/postgresql")], std::env::var("PATH").ok().as_deref());
    let r = check(archive, base, tool)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&r.json)?);
    } else {
        for line in &r.text {
            println!("{line}");
        }
    }
    Ok(if r.incomplete {
        ExitCode::from(INCOMPLETE)
    } else if r.backup_invalid {
        ExitCode::from(BACKUP_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = 16 << 20;

    /// A temporary archive of sparse segment files with real long page headers.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Self {
            let d = std::env::temp_dir().join(format!("cs-walcheck-{}", uuid::Uuid::now_v7().simple()));
            std::fs::create_dir_all(&d).expect("dir");
            Self(d)
        }

        fn segment(&self, tli: u32, segno: u64) -> String {
            self.segment_sized(tli, segno, MIB16, segno * MIB16)
        }

        fn segment_sized(&self, tli: u32, segno: u64, len: u64, pageaddr: u64) -> String {
            let name = segment_name(tli, segno, MIB16);
            let mut head = [0u8; LONG_HEADER];
            head[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
            head[2..4].copy_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
            head[4..8].copy_from_slice(&tli.to_le_bytes());
            head[8..16].copy_from_slice(&pageaddr.to_le_bytes());
            head[32..36].copy_from_slice(&u32::try_from(MIB16).expect("size").to_le_bytes());
            head[36..40].copy_from_slice(&8192u32.to_le_bytes());
            std::fs::write(self.0.join(&name), head).expect("write");
            std::fs::OpenOptions::new().write(true).open(self.0.join(&name)).expect("open").set_len(len).expect("len");
            name
        }

        fn file(&self, name: &str, body: &str) {
            std::fs::write(self.0.join(name), body).expect("write");
        }

        fn check(&self) -> Report {
            check(&self.0, None, None).expect("check")
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn backup_check_names_and_lsns_follow_postgres() {
        assert_eq!(segment_name(1, 0x1FF, MIB16), "0000000100000001000000FF");
        assert_eq!(Name::parse("0000000100000001000000FF").map(|n| n.segno(MIB16)), Some(0x1FF));
        assert_eq!(segment_name(2, 0x100, MIB16), "000000020000000100000000");
        assert_eq!(parse_lsn("1/2000028"), Some(0x1_0200_0028));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(Name::parse("00000001000000000000000G"), None);
    }

    #[test]
    fn backup_check_passes_a_whole_archive_across_a_log_file_boundary() {
        let d = Dir::new();
        for segno in 0xFD..=0x102 {
            d.segment(1, segno);
        }
        d.file(
            "0000000100000000000000FE.00000028.backup",
            "START WAL LOCATION: 0/FE000028 (file 0000000100000000000000FE)\nSTOP WAL LOCATION: 0/FE000100 (file 0000000100000000000000FE)\n",
        );
        let r = d.check();
        assert!(!r.incomplete, "{}", r.text.join("\n"));
        assert_eq!(r.json["start_segment"], "0000000100000000000000FE", "starts at the newest backup");
        assert_eq!(r.json["end_segment"], "000000010000000100000002");
        assert_eq!(r.json["segments_needed"], 5);
        assert_eq!(r.json["pg_verifybackup"]["detail"], "skipped: no --base-backup given");
    }

    #[test]
    fn backup_check_names_the_first_missing_and_a_truncated_or_misplaced_segment() {
        let d = Dir::new();
        for segno in 1..=8 {
            if segno != 3 && segno != 4 {
                d.segment(1, segno);
            }
        }
        d.segment_sized(1, 6, 8192, 6 * MIB16);
        d.segment_sized(1, 7, MIB16, 2 * MIB16);
        let r = d.check();
        assert!(r.incomplete);
        assert_eq!(r.json["first_missing"], "000000010000000000000003");
        assert_eq!(r.json["missing_count"], 2);
        let text = r.text.join("\n");
        assert!(text.contains("TRUNCATED  000000010000000000000006: 8192 bytes"), "{text}");
        assert!(text.contains("MISPLACED  000000010000000000000007"), "{text}");
        assert!(text.ends_with("INCOMPLETE: first missing segment 000000010000000000000003 (2 missing)"), "{text}");
    }

    #[test]
    fn backup_check_follows_a_timeline_switch_and_wants_its_history_file() {
        let d = Dir::new();
        // Timeline 1 until 0/5800000 (inside segment 5); timeline 2 from segment 5 on. The end of
        // timeline 1 was archived as .partial at promotion.
        for segno in 2..=4 {
            d.segment(1, segno);
        }
        d.file(&format!("{}.partial", segment_name(1, 5, MIB16)), "");
        for segno in 5..=7 {
            d.segment(2, segno);
        }
        d.file(
            "000000010000000000000002.00000028.backup",
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n",
        );
        let r = d.check();
        let text = r.text.join("\n");
        assert!(r.incomplete, "no history file: {text}");
        assert!(text.contains("HISTORY    00000002.history: missing"), "{text}");

        d.file("00000002.history", "1\t0/5800000\tno recovery target specified\n");
        let r = d.check();
        assert!(!r.incomplete, "{}", r.text.join("\n"));
        assert_eq!(r.json["timeline"], 2);
        assert_eq!(r.json["end_segment"], "000000020000000000000007");
        assert_eq!(r.json["partial"][0], "000000010000000000000005.partial");

        // A gap on the new timeline is named with the new timeline's name.
        std::fs::remove_file(d.0.join(segment_name(2, 6, MIB16))).expect("rm");
        let r = d.check();
        assert_eq!(r.json["first_missing"], "000000020000000000000006");
    }

    #[test]
    fn backup_check_says_when_pg_verifybackup_is_not_found() {
        let empty = Dir::new();
        assert_eq!(find_pg_verifybackup(std::slice::from_ref(&empty.0), Some(empty.0.to_str().expect("utf-8"))), None);
        let base = Dir::new();
        base.file("backup_label", "START WAL LOCATION: 0/1000028 (file 000000010000000000000001)\n");
        base.file(
            "backup_manifest",
            r#"{"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/1000028", "End-LSN": "0/1000100"}]}"#,
        );
        let d = Dir::new();
        d.segment(1, 1);
        let r = check(&d.0, Some(&base.0), None).expect("check");
        assert!(!r.incomplete);
        assert_eq!(
            r.json["pg_verifybackup"]["detail"],
            "skipped: pg_verifybackup not found (looked in /usr/lib/postgresql/*/bin and PATH)"
        );
        assert!(r.text.iter().any(|l| l.contains("skipped: pg_verifybackup not found")), "{:?}", r.text);
    }

    #[test]
    fn backup_check_refuses_a_directory_that_is_not_a_base_backup() {
        let d = Dir::new();
        d.segment(1, 1);
        let e = check(&d.0, Some(&d.0), None).err().expect("not a base backup");
        assert!(e.to_string().contains("neither backup_label nor a backup_manifest"), "{e}");
        let e = check(&d.0.join("nope"), None, None).err().expect("no archive");
        assert!(format!("{e:#}").contains("--archive"), "{e:#}");
    }
}
