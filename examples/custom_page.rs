//! Your own error answers: a branded HTML page for the site (for the gateway's
//! failures, and in place of the upstream's own 500/502/503 pages, which may leak
//! a stack trace), and a JSON body in your API's own error format. Serves them on
//! loopback, calls each once, prints what a browser and an API client get, and
//! exits.
//!
//! ```text
//! cargo run --example custom_page
//! ```

use axum::Router;
use axum::extract::Request;
use bytes::Bytes;
use http::{Response, StatusCode};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceBuilder;
use tower_bad_gateway::render::Renderer;
use tower_bad_gateway::{BadGatewayLayer, ErrorKind, ErrorStatus, GatewayLayer, ResponsePolicy};

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{status} · Acme</title>
<style>body{font:16px/1.5 system-ui;background:#0b1f3a;color:#fff;text-align:center;padding:4rem}
h1{font-size:4rem;margin:0}a{color:#ffd166}</style></head>
<body>
<h1>{status}</h1>
<p>{message}</p>
<p>Our team has been notified{request_id}. <a href="/">Back to Acme</a></p>
</body>
</html>
"#;

#[tokio::main]
async fn main() {
    // An upstream that is down: nothing listens on this port.
    let down = TcpSocket::new_v4().unwrap();
    down.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let upstream = down.local_addr().unwrap();

    // An upstream that is up, but whose errors leak a stack trace.
    let leaky = leaky_upstream().await;

    // The site: a branded page, and a busy upstream is a 503 with Retry-After.
    let site_renderer = Renderer::new()
        .proxy_name("acme-edge")
        .html_template(PAGE)
        .status(
            ErrorKind::ConnectionRefused,
            ErrorStatus::SERVICE_UNAVAILABLE,
        )
        .retry_after(Duration::from_secs(30));
    let site = BadGatewayLayer::new().renderer(site_renderer.clone());
    // The same page in place of the upstream's own 500, 502 and 503 pages
    // (nginx's proxy_intercept_errors): their status stays, their body goes.
    let intercepting = BadGatewayLayer::new()
        .renderer(site_renderer)
        .response_policy(ResponsePolicy::new().intercept_statuses([
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ]));

    // The API: its own error JSON, whatever the client asked for.
    let api = BadGatewayLayer::new().renderer(Renderer::custom(|err, info| {
        let status = if err.is_timeout() { 504 } else { 502 };
        let request_id = info
            .request_id()
            .and_then(|id| id.to_str().ok())
            .unwrap_or("");
        let body = format!(
            r#"{{"error":{{"code":"UPSTREAM_{}","retryable":{},"request_id":"{}"}}}}"#,
            err.kind().as_str().to_ascii_uppercase(),
            err.kind().request_sent() == tower_bad_gateway::RequestSent::No,
            request_id.replace(['"', '\\'], ""),
        );
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Bytes::from(body))
            .unwrap_or_default()
    }));

    let app = Router::new()
        .nest_service("/api", proxy(upstream, api))
        .nest_service("/checkout", proxy(leaky, intercepting))
        .fallback_service(proxy(upstream, site));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://{addr}/pricing"))
        .header("accept", "text/html")
        .header("x-request-id", "7f3a")
        .send()
        .await
        .unwrap();
    println!("A browser asking for /pricing gets:\n");
    print(res).await;

    let res = http
        .get(format!("http://{addr}/checkout"))
        .header("accept", "text/html")
        .header("x-request-id", "7f3c")
        .send()
        .await
        .unwrap();
    println!(
        "\nA browser asking for /checkout, whose upstream answers 500 with a stack trace, gets:\n"
    );
    print(res).await;

    let res = http
        .get(format!("http://{addr}/api/orders"))
        .header("x-request-id", "7f3b")
        .send()
        .await
        .unwrap();
    println!("\nAn API client asking for /api/orders gets:\n");
    print(res).await;
    drop(down);
}

/// An upstream whose every answer is a 500 with a stack trace in its body.
async fn leaky_upstream() -> std::net::SocketAddr {
    let app = Router::new().fallback(|| async {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Traceback (most recent call last):\n  File \"/srv/shop/checkout.py\", line 42\nKeyError: 'DB_PASSWORD'\n",
        )
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A proxy to `upstream` that answers failures with `layer`'s configuration.
fn proxy(upstream: std::net::SocketAddr, layer: BadGatewayLayer) -> Router {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let stack = ServiceBuilder::new()
        .map_request(move |mut req: Request| {
            *req.uri_mut() = format!("http://{upstream}/").parse().unwrap();
            req
        })
        .layer(GatewayLayer::new().bad_gateway(layer).max_attempts(1))
        .service(client);
    Router::new().fallback_service(stack)
}

async fn print(res: reqwest::Response) {
    println!("  {:?} {}", res.version(), res.status());
    for (name, value) in res.headers() {
        if name != "date" && name != "content-length" {
            println!("  {name}: {}", value.to_str().unwrap_or("?"));
        }
    }
    println!();
    for line in res.text().await.unwrap().lines() {
        println!("  {line}");
    }
}
