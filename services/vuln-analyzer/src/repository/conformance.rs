//! The behaviour every [`AnalysisRepository`] must have, as one suite run against each
//! backend (`services/vuln-analyzer/tests/repository.rs` runs it on SQLite and on PostgreSQL).
//!
//! Each check uses fresh tenants, so the suite can run against a shared database.

use phantom_domain::{Analysis, Fingerprint, Tenant};
use phantom_kit::time::now_micros;
use phantom_proto::pb::Severity;

use super::AnalysisRepository;

fn tenant() -> Tenant {
    Tenant::parse(&format!("t-{}", uuid::Uuid::now_v7().simple())).expect("a tenant id")
}

/// Runs every check against `store`.
pub async fn run_all(store: &dyn AnalysisRepository) {
    analyses_keep_the_first_verdict(store).await;
    enrichment_jobs_are_queued_once_claimed_exclusively_and_retried(store).await;
}

/// The first analysis of a fingerprint is kept; tenants do not share analyses.
pub async fn analyses_keep_the_first_verdict(store: &dyn AnalysisRepository) {
    let t = tenant();
    let first = Analysis {
        tenant: t.clone(),
        fingerprint: Fingerprint::new("fp"),
        score: 9.8,
        severity: Severity::Critical.into(),
        analyzer: "rules".into(),
        confidence: 90,
        summary: "s".into(),
        remediation: "r".into(),
        degraded: true,
        analyzed_at: now_micros(),
        impact: String::new(),
        suppression_suggested: false,
        suppression_reason: String::new(),
        // Stored as its vector and recomputed when read: it must read back the same.
        cvss: Some(
            (&"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/CR:H/MAV:A"
                .parse::<crate::cvss::Vector>()
                .unwrap()
                .to_pb())
                .into(),
        ),
    };
    assert_eq!(store.put_analysis(&first).await.unwrap(), first);
    let second = Analysis {
        score: 1.0,
        ..first.clone()
    };
    assert_eq!(store.put_analysis(&second).await.unwrap(), first);
    assert_eq!(
        store
            .get_analysis(&tenant(), &Fingerprint::new("fp"))
            .await
            .unwrap(),
        None
    );

    // A degraded verdict may be upgraded once; a full one is never replaced.
    let better = Analysis {
        analyzer: "llm:test".into(),
        degraded: false,
        impact: "remote code execution".into(),
        suppression_suggested: true,
        suppression_reason: "lab host".into(),
        ..first.clone()
    };
    assert!(store.upgrade_analysis(&better).await.unwrap());
    assert_eq!(
        store
            .get_analysis(&t, &Fingerprint::new("fp"))
            .await
            .unwrap(),
        Some(better.clone())
    );
    let worse = Analysis {
        degraded: true,
        ..first.clone()
    };
    assert!(!store.upgrade_analysis(&worse).await.unwrap());
    assert_eq!(
        store
            .get_analysis(&t, &Fingerprint::new("fp"))
            .await
            .unwrap(),
        Some(better)
    );
}

/// The enrichment queue: a finding is queued once; a claim is exclusive until its lease
/// ends; a retry counts the attempt and makes the job due later; finishing removes it.
pub async fn enrichment_jobs_are_queued_once_claimed_exclusively_and_retried(
    store: &dyn AnalysisRepository,
) {
    let t = tenant();
    let now = now_micros();
    let mine = |jobs: Vec<super::EnrichmentJob>| -> Vec<super::EnrichmentJob> {
        jobs.into_iter().filter(|j| j.tenant == t).collect()
    };
    assert!(
        store
            .enqueue_enrichment(&t, &Fingerprint::new("fp-a"), "A", now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .enqueue_enrichment(&t, &Fingerprint::new("fp-a"), "A2", now)
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_enrichment(&t, &Fingerprint::new("fp-b"), "B", now + 1)
            .await
            .unwrap()
    );
    assert!(store.enrichment_backlog().await.unwrap() >= 2);

    // Not due yet: nothing to claim.
    assert!(
        mine(
            store
                .claim_enrichments(now - 1, now + 10, 1000)
                .await
                .unwrap()
        )
        .is_empty()
    );

    let lease = now + 60_000_000;
    let claimed = mine(store.claim_enrichments(now + 1, lease, 1000).await.unwrap());
    assert_eq!(
        claimed
            .iter()
            .map(|j| j.payload.as_str())
            .collect::<Vec<_>>(),
        ["A", "B"],
        "oldest due first, payload as first queued"
    );
    assert_eq!(claimed[0].attempts, 0);
    // Leased: nobody else gets them before the lease ends.
    assert!(mine(store.claim_enrichments(now + 2, lease, 1000).await.unwrap()).is_empty());

    store
        .retry_enrichment(
            &t,
            &Fingerprint::new("fp-a"),
            now + 5,
            true,
            "LLM timed out",
        )
        .await
        .unwrap();
    store
        .retry_enrichment(
            &t,
            &Fingerprint::new("fp-b"),
            now + 5,
            false,
            "breaker open",
        )
        .await
        .unwrap();
    let again = mine(store.claim_enrichments(now + 5, lease, 1000).await.unwrap());
    assert_eq!(
        again
            .iter()
            .map(|j| (j.fingerprint.as_str(), j.attempts))
            .collect::<Vec<_>>(),
        [("fp-a", 1), ("fp-b", 0)]
    );
    store
        .finish_enrichment(&t, &Fingerprint::new("fp-a"))
        .await
        .unwrap();
    store
        .finish_enrichment(&t, &Fingerprint::new("fp-b"))
        .await
        .unwrap();
    // A lapsed lease would make them claimable again; finished ones are gone for good.
    assert!(
        mine(
            store
                .claim_enrichments(lease + 1, lease + 2, 1000)
                .await
                .unwrap()
        )
        .is_empty()
    );
}
