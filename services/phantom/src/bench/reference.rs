//! The reference the layers suite measures PHANTOM against: tonic alone, no middleware, on
//! the same RPC shape (`VulnAnalyzer/ScoreCvss`, the same request, an answer of the same
//! size, fixed). It runs as a process of its own (`phantom bench reference`), started and
//! pinned exactly as `phantom serve vuln-analyzer` is, so the two differ only in what the
//! server does per call.

use std::net::SocketAddr;

use phantom_proto::pb::{
    self,
    vuln_analyzer_server::{VulnAnalyzer, VulnAnalyzerServer},
};
use tonic::{Request, Response, Status};

/// `VulnAnalyzer` with a fixed `ScoreCvss` answer; the other methods are unimplemented.
#[derive(Debug, Default)]
struct Fixed;

#[tonic::async_trait]
impl VulnAnalyzer for Fixed {
    async fn analyze_findings(
        &self,
        _: Request<pb::AnalyzeFindingsRequest>,
    ) -> Result<Response<pb::AnalyzeFindingsResponse>, Status> {
        Err(Status::unimplemented("the reference server only scores"))
    }

    async fn score_cvss(
        &self,
        _: Request<pb::ScoreCvssRequest>,
    ) -> Result<Response<pb::ScoreCvssResponse>, Status> {
        Ok(Response::new(pb::ScoreCvssResponse {
            base_score: 9.8,
            severity: "CRITICAL".into(),
            normalized_vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
            impact_score: 5.9,
            exploitability_score: 3.9,
            cvss: None,
        }))
    }

    async fn warm_scan(
        &self,
        _: Request<pb::WarmScanRequest>,
    ) -> Result<Response<pb::WarmScanResponse>, Status> {
        Err(Status::unimplemented("the reference server only scores"))
    }
}

/// Serves the reference on `listen` until the process is stopped; prints the bound address
/// on stdout first (the runner reads it).
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("{}", listener.local_addr()?);
    // TCP_NODELAY, as PHANTOM's servers set it: the transport is the same, only the
    // middleware and the handler differ.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(VulnAnalyzerServer::new(Fixed))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
