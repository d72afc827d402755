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
        let id = req.headers()[REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let tenant = req.headers()[TENANT_HEADER].to_str().unwrap().to_owned();
        Ok::<_, Infallible>(Response::new(format!("{id}|{tenant}")))
    }));
    let handler = service_fn(move |_req: Request<Body>| {
        let client = client.clone();
        async move {
            let seen = client.oneshot(Request::new(())).await?.into_body();
            let mut res = Response::new(Body::empty());
            res.headers_mut().insert("seen", seen.parse().unwrap());
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
    assert_eq!(res.headers()["seen"], "req-7|acme");
}

#[tokio::test(start_paused = true)]
async fn downstream_calls_get_the_time_left_of_the_incoming_deadline() {
    use std::time::Duration;

    use tonic::body::Body;

    use crate::deadline::{GRPC_TIMEOUT, parse};

    let client = PropagateContextLayer.layer(service_fn(|req: Request<()>| async move {
        let got = req
            .headers()
            .get(GRPC_TIMEOUT)
            .map(|v| v.to_str().unwrap().to_owned());
        Ok::<_, Infallible>(Response::new(got.unwrap_or_default()))
    }));
    let handler = service_fn(move |_req: Request<Body>| {
        let client = client.clone();
        async move {
            tokio::time::advance(Duration::from_millis(400)).await;
            let first = client.clone().oneshot(Request::new(())).await?.into_body();
            // A downstream call with a shorter timeout of its own keeps it.
            let mut short = Request::new(());
            short
                .headers_mut()
                .insert(GRPC_TIMEOUT, "100m".parse().unwrap());
            let second = client.clone().oneshot(short).await?.into_body();
            tokio::time::advance(Duration::from_millis(700)).await;
            let late = client.clone().oneshot(Request::new(())).await?;
            let mut res = Response::new(Body::empty());
            res.headers_mut().insert("first", first.parse().unwrap());
            res.headers_mut().insert("second", second.parse().unwrap());
            res.headers_mut().insert(
                "late",
                late.headers()
                    .get("grpc-status")
                    .cloned()
                    .unwrap_or(http::HeaderValue::from_static("none")),
            );
            Ok::<_, Infallible>(res)
        }
    });
    let server = RequestIdLayer::new("test").layer(handler);
    let req = Request::builder()
        .header(GRPC_TIMEOUT, "1S")
        .body(Body::empty())
        .unwrap();
    let res = server.oneshot(req).await.unwrap();
    let first = parse(res.headers()["first"].to_str().unwrap()).unwrap();
    assert_eq!(first, Duration::from_millis(600));
    assert_eq!(
        parse(res.headers()["second"].to_str().unwrap()).unwrap(),
        Duration::from_millis(100)
    );
    assert_eq!(
        res.headers()["late"],
        "4",
        "DEADLINE_EXCEEDED without calling out"
    );
}
