//! The HTTP API as a client sees it: status codes, bodies, limits.

mod common;

use common::{Server, HEADLINE, SLOW};
use matcalc_web::Config;
use std::time::{Duration, Instant};

#[test]
fn page_assets_and_openapi_are_served() {
    let s = Server::start(Config::default());
    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.body.contains("src=\"/app.js\""), "{}", page.body);
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    for (path, ty) in [("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ty), "{path}");
        assert!(r.body.len() > 100, "{path} is empty");
    }
    let spec = s.get("/openapi.json").json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for p in ["/api/parse", "/api/derive", "/api/eval", "/api/check"] {
        assert!(
            spec["paths"][p]["post"].is_object(),
            "{p} missing from the OpenAPI file"
        );
    }
    let missing = s.get("/nothing/here");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["kind"], "request");
    // No file system behind the routes.
    assert_eq!(s.get("/../Cargo.toml").status, 404);
    assert_eq!(s.get("/static/index.html").status, 404);
}

#[test]
fn derive_headline() {
    let s = Server::start(Config::default());
    let r = s.post("/api/derive", HEADLINE);
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        j["forms"]["nested"]["results"][0]["text"],
        "−2 W1ᵀ (sin(W1 x) ⊙ (W2ᵀ (sin(W2 cos(W1 x)) ⊙ cos(W2 cos(W1 x)))))"
    );
    assert!(j["forms"]["diag"]["mathml"].as_str().unwrap().contains("<mtable"));
    assert_eq!(j["derivatives"][0]["kind"], "gradient");
    assert_eq!(j["code"].as_array().unwrap().len(), 4);
    let ex = &j["explanation"];
    assert!(ex["text"].as_str().unwrap().contains("⇒ ∂f/∂x = −2 W1ᵀ"), "{ex}");
    assert!(
        ex["html"].as_str().unwrap().starts_with("<table class=\"derivation\">"),
        "{ex}"
    );
    let x = j["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "x")
        .unwrap();
    assert_eq!(x["decl"], "x: vector(100)");
    assert_eq!(x["declared"], false);
}

#[test]
fn latex_input_and_parse() {
    let s = Server::start(Config::default());
    let body = serde_json::json!({"expr": r"L(x) := \|A x - b\|_2^2, \quad A \in \mathbb{R}^{m \times n}"}).to_string();
    let r = s.post("/api/derive", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["wrt"], serde_json::json!(["x"]));
    let p = s.post("/api/parse", r#"{"expr": "x'*S*x", "decls": "S: symmetric(n)"}"#);
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.json()["variables"][0]["kind"], "vector");
}

#[test]
fn bad_input_is_400_with_a_span() {
    let s = Server::start(Config::default());
    let r = s.post("/api/derive", r#"{"expr": "sinn(W*x)", "wrt": ["x"]}"#);
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["kind"], "name");
    assert_eq!(e["span"], serde_json::json!({"start": 0, "end": 4}));
    assert_eq!(e["origin"], "expr");
    assert_eq!(e["hint"], "did you mean `sin`?");

    let r = s.post(
        "/api/derive",
        r#"{"expr": "A*x", "decls": "A: matrx(3, 4)", "wrt": ["x"]}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["origin"], "decls");

    let r = s.post(
        "/api/derive",
        r#"{"expr": "A*x + B", "decls": "A: matrix(3, 4); B: matrix(2, 2)", "wrt": ["x"]}"#,
    );
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["kind"], "shape");
    assert!(e["labels"].as_array().unwrap().len() >= 2, "{e}");

    for body in [
        "{\"expr\": ",
        "[1, 2]",
        "{\"wrt\": [\"x\"]}",
        "{\"expr\": 3}",
        "",
        "\u{0}\u{1}",
    ] {
        let r = s.post("/api/derive", body);
        assert_eq!(r.status, 400, "{body:?}: {}", r.body);
        assert_eq!(r.json()["kind"], "request", "{body:?}");
    }
    // Deep nesting is refused by the parser's bound, not by a crash.
    let deep = format!("{}x{}", "(".repeat(5000), ")".repeat(5000));
    let r = s.post(
        "/api/derive",
        &serde_json::json!({"expr": deep, "wrt": ["x"]}).to_string(),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let deep = format!("{}x{}", "sin(".repeat(3000), ")".repeat(3000));
    let r = s.post(
        "/api/check",
        &serde_json::json!({"expr": deep, "wrt": ["x"]}).to_string(),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["kind"], "limit");
}

#[test]
fn eval_and_check() {
    let s = Server::start(Config::default());
    let r = s.post(
        "/api/eval",
        r#"{"expr": "norm2(A*x - b)^2", "values": {"A": [[1, 2], [3, 4], [5, 6]], "b": [1, 0, 1], "x": [0.5, -0.5]}, "wrt": ["x"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["value"], 4.75);
    assert_eq!(j["derivatives"]["x"], serde_json::json!([-21.0, -28.0]));
    let r = s.post(
        "/api/eval",
        r#"{"expr": "norm2(A*x - b)^2", "values": {"A": [[1, 2], [3]]}}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["kind"], "value");

    let c = HEADLINE.replace("}", r#", "trials": 1}"#);
    let r = s.post("/api/check", &c);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["passed"], true);
}

#[test]
fn large_bodies_are_413() {
    let s = Server::start(Config::default());
    let expr = "x+".repeat(40_000) + "x";
    let r = s.post(
        "/api/derive",
        &serde_json::json!({"expr": expr, "wrt": ["x"]}).to_string(),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["kind"], "request");
    // Just under the limit is read (and answered on its merits).
    let expr = "x+".repeat(30_000) + "x";
    let r = s.post("/api/parse", &serde_json::json!({"expr": expr}).to_string());
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);
}

#[test]
fn slow_computations_get_422_and_the_server_stays_responsive() {
    let s = Server::start(Config {
        timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let addr = s.addr;
    let slow = std::thread::spawn(move || {
        let t = Instant::now();
        (
            common::request(addr, "POST", "/api/check", SLOW.as_bytes()),
            t.elapsed(),
        )
    });
    std::thread::sleep(Duration::from_millis(50));
    // While it runs, the page and small requests are answered at once.
    let t = Instant::now();
    assert_eq!(s.get("/").status, 200);
    assert_eq!(s.post("/api/parse", r#"{"expr": "x'*x"}"#).status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let (r, took) = slow.join().unwrap();
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["kind"], "timeout");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn saturated_server_answers_503_then_recovers() {
    let s = Server::start(Config {
        timeout: Duration::from_millis(200),
        concurrency: 1,
        queue_wait: Duration::from_millis(50),
        ..Config::default()
    });
    // The slow check times out but keeps its slot until it really ends.
    assert_eq!(s.post("/api/check", SLOW).status, 422);
    let r = s.post("/api/derive", HEADLINE);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["kind"], "busy");
    let t = Instant::now();
    loop {
        let r = s.post("/api/derive", HEADLINE);
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(t.elapsed() < Duration::from_secs(60), "the slot never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_openapi_examples_work() {
    let s = Server::start(Config::default());
    let spec = s.get("/openapi.json").json();
    let paths = spec["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 4);
    for (path, item) in paths {
        let example = &item["post"]["requestBody"]["content"]["application/json"]["example"];
        assert!(example.is_object(), "{path}: no example");
        let r = s.post(path, &example.to_string());
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        // Every top-level field the spec lists for the response is in the answer.
        let schema = item["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        let body = r.json();
        let listed = fields(&spec, &spec["components"]["schemas"][schema]);
        assert!(listed.len() >= 4, "{path}: {listed:?}");
        for field in listed {
            assert!(body.get(&field).is_some(), "{path}: `{field}` missing from {body}");
        }
    }
}

/// The properties a schema lists, through `allOf` and `$ref`.
fn fields(spec: &serde_json::Value, schema: &serde_json::Value) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        return fields(spec, &spec["components"]["schemas"][r.rsplit('/').next().unwrap()]);
    }
    let mut out: Vec<String> = schema["properties"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys().cloned())
        .collect();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        out.extend(fields(spec, part));
    }
    out
}
