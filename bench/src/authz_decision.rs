//! Authorisation decision latency: one `authz::Engine::decide` call (Cedar entities and request
//! built, the action's policies evaluated by Cedar; the question's shapes were validated against
//! the schema once, at load), measured one call at a time so the percentiles are per decision.
//! Baseline in the same run: copying the document facts, so the ratio isolates the engine's share.

use std::time::Instant;

use authz::{Action, DocumentFacts, Engine, Level, Resource, Subject};
use identity::Role;
use uuid::Uuid;

#[derive(clap::Args)]
pub struct Args {
    /// Decisions to time.
    #[arg(long, default_value_t = 200_000)]
    decisions: usize,
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let engine = Engine::load()?;
    let loaded = started.elapsed();
    let tenant = Uuid::now_v7();
    let dept = Uuid::now_v7();
    let raiser = Subject { tenant, user: Uuid::now_v7(), role: Role::Staff, department: Some(dept) };
    let fin = Subject { tenant, user: Uuid::now_v7(), role: Role::Finance, department: None };
    let hod = Subject { tenant, user: Uuid::now_v7(), role: Role::Hod, department: Some(dept) };
    let doc = DocumentFacts {
        tenant,
        id: Uuid::now_v7(),
        kind: "voucher",
        department: dept,
        raiser: raiser.user,
        status: "hod_approved",
        amount_minor: 250_000,
        approvers: vec![hod.user],
        level: Some(Level::Finance),
    };
    // A permit (finance approves) and a forbid (the HOD tries a second level) alternate.
    let cases = [(&fin, true), (&hod, false)];
    for _ in 0..10_000 {
        for (s, _) in cases {
            let _ = engine.decide(s, Action::DocumentApprove, &Resource::Document(&doc));
        }
    }
    let mut times = Vec::with_capacity(args.decisions);
    let mut baseline = Vec::with_capacity(args.decisions);
    for i in 0..args.decisions {
        let (s, expect) = cases[i % 2];
        let t = Instant::now();
        let ok = engine.decide(s, Action::DocumentApprove, &Resource::Document(&doc)).is_ok();
        times.push(t.elapsed().as_nanos());
        anyhow::ensure!(ok == expect, "wrong decision for {:?}", s.role);
        let t = Instant::now();
        let copy = std::hint::black_box(doc.clone());
        std::hint::black_box(copy.approvers.len());
        baseline.push(t.elapsed().as_nanos());
    }
    times.sort_unstable();
    baseline.sort_unstable();
    let p99 = percentile(&times, 0.99);
    println!(
        "authz decisions: {} (permit/forbid alternating), policies loaded: {} (engine loaded and every question shape \
         validated in {:.1} ms)",
        args.decisions,
        engine.policy_count(),
        loaded.as_secs_f64() * 1e3
    );
    let line = |name: &str, v: &[u128]| {
        println!(
            "  {name:<8} p50 {:8.2}   p95 {:8.2}   p99 {:8.2}   p99.9 {:8.2}   max {:9.2} µs",
            percentile(v, 0.50),
            percentile(v, 0.95),
            percentile(v, 0.99),
            percentile(v, 0.999),
            percentile(v, 1.0),
        );
    };
    line("decide", &times);
    line("baseline", &baseline);
    println!("  (baseline: copying the document facts only)");
    println!("  target p99 <= 20 µs: {}", if p99 <= 20.0 { "met" } else { "NOT met" });
    Ok(())
}
