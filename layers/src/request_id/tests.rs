use std::convert::Infallible;

use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::{Tenant, TenantLayer, tenant::TENANT_HEADER};

#[tokio::test]
async fn generates_an_id_when_the_caller_sends_none_and_echoes_it() {
    let svc = RequestIdLayer::new("test").layer(service_fn(|req: Request<()>| async move {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .expect("id in extensions");
        assert_eq!(current().expect("context set").request_id, id);
        Ok::<_, Infallible>(Response::new(id.to_string()))
    }));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    let echoed = res.headers()[REQUEST_ID_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(&echoed, res.body());
    assert!(uuid::Uuid::parse_str(&echoed).is_ok());
}

#[tokio::test]
async fn keeps_a_sane_caller_id_and_replaces_a_hostile_one() {
    let svc = RequestIdLayer::new("test").layer(service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(
            req.extensions().get::<RequestId>().unwrap().to_string(),
        ))
    }));
    let req = Request::builder()
        .header(REQUEST_ID_HEADER, "abc-123")
        .body(())
        .unwrap();
    assert_eq!(svc.clone().oneshot(req).await.unwrap().body(), "abc-123");

    let req = Request::builder()
        .header(REQUEST_ID_HEADER, "evil id; rm -rf")
        .body(())
        .unwrap();
    assert_ne!(svc.oneshot(req).await.unwrap().body(), "evil id; rm -rf");
}

#[tokio::test]
async fn outgoing_calls_carry_the_request_id_and_tenant_of_the_call_being_served() {
    use tonic::body::Body;

    let client = PropagateContextLayer.layer(service_fn(|req: Request<()>| async move {
        let id = req.headers()[REQUEST_ID_HEADER].clone();
        let tenant = req.headers()[TENANT_HEADER].clone();
        Ok::<_, Infallible>((id, tenant))
    }));
    let handler = service_fn(move |_req: Request<Body>| {
        let client = client.clone();
        async move {
            let (id, tenant) = client.oneshot(Request::new(())).await?;
            let mut res = Response::new(Body::empty());
            res.headers_mut().insert("seen-id", id);
            res.headers_mut().insert("seen-tenant", tenant);
            Ok::<_, Infallible>(res)
        }
    });
    let tenant = TenantLayer::fixed(Tenant::parse("acme").unwrap());
    let server = RequestIdLayer::new("test").layer(tenant.layer(handler));
    let req = Request::builder()
        .header(REQUEST_ID_HEADER, "req-7")
        .body(Body::empty())
        .unwrap();
    let res = server.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["seen-id"], "req-7");
    assert_eq!(res.headers()["seen-tenant"], "acme");
}
