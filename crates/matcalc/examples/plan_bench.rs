//! Timing driver for `bench/compare.py`: evaluates a compiled plan many times
//! in-process (no start-up or I/O in the timed part) and measures faer's
//! single-threaded GEMM rate. Prints one JSON object.
//!
//! ```text
//! plan_bench eval --expr E [--decl D] [--wrt x]… [--order k] --at NAME=FILE.npy… [--batch x]
//!                 [--seconds 0.2] [--runs 7]
//! plan_bench gemm --m 512 --n 512 --k 512 [--seconds 0.2] [--runs 7]
//! ```

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use matcalc::eval::{values, Tensor};
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Vec<String> {
    args.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

fn one(args: &[String], name: &str, default: &str) -> String {
    arg(args, name).pop().unwrap_or_else(|| default.to_string())
}

/// Median seconds per call: `runs` runs, each of as many calls as fit in `seconds`.
fn time(mut f: impl FnMut(), seconds: f64, runs: usize) -> (f64, Vec<f64>) {
    f();
    let t0 = Instant::now();
    f();
    let once = t0.elapsed().as_secs_f64().max(1e-9);
    let n = ((seconds / once) as usize).clamp(1, 1_000_000);
    let mut per: Vec<f64> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..n {
                f();
            }
            t0.elapsed().as_secs_f64() / n as f64
        })
        .collect();
    let all = per.clone();
    per.sort_by(f64::total_cmp);
    (per[per.len() / 2], all)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = one(&args, "--seconds", "0.2").parse().expect("--seconds");
    let runs: usize = one(&args, "--runs", "7").parse().expect("--runs");
    match args.first().map(String::as_str) {
        Some("gemm") => {
            let d = |n: &str| -> usize { one(&args, n, "512").parse().expect("size") };
            let (m, n, k) = (d("--m"), d("--n"), d("--k"));
            let a = Mat::<f64>::from_fn(m, k, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
            let b = Mat::<f64>::from_fn(k, n, |i, j| ((i * 5 + j * 2) % 13) as f64 - 6.0);
            let mut c = Mat::<f64>::zeros(m, n);
            let (t, all) = time(
                || matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), 1.0, Par::Seq),
                seconds,
                runs,
            );
            let macs = (m * n * k) as f64;
            println!(
                "{}",
                serde_json::json!({"median": t, "runs": all, "macs": macs, "macs_per_s": macs / t})
            );
        }
        Some("eval") => {
            let expr = one(&args, "--expr", "");
            let decl = arg(&args, "--decl").join("; ");
            let wrt = arg(&args, "--wrt");
            let order: usize = one(&args, "--order", "1").parse().expect("--order");
            let batch = arg(&args, "--batch").pop();
            let vals: Vec<(String, Tensor)> = arg(&args, "--at")
                .iter()
                .map(|s| {
                    let (n, p) = s.split_once('=').expect("NAME=FILE.npy");
                    let bytes = std::fs::read(p).expect("read .npy");
                    (n.to_string(), values::value_from_npy(&bytes, p).expect("a .npy file"))
                })
                .collect();
            let named: Vec<(&str, &Tensor)> = vals.iter().map(|(n, t)| (n.as_str(), t)).collect();
            let w: Vec<&str> = wrt.iter().map(String::as_str).collect();
            let t0 = Instant::now();
            let mut c = matcalc::compile(&expr, &decl, &w, order).expect("compile");
            let derive = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let run = |c: &mut matcalc::Compiled| -> f64 {
                let e = match &batch {
                    Some(b) => c.eval_batch(&named, b),
                    None => c.eval(&named),
                }
                .expect("eval");
                e.value().data[0]
            };
            let v = run(&mut c);
            let first = t1.elapsed().as_secs_f64();
            if args.iter().any(|a| a == "--show-plan") {
                eprint!("{}", c.plan_summary());
            }
            let (t, all) = time(
                || {
                    std::hint::black_box(run(&mut c));
                },
                seconds,
                runs,
            );
            println!(
                "{}",
                serde_json::json!({"median": t, "runs": all, "derive": derive, "first_eval": first, "value": v})
            );
        }
        _ => {
            eprintln!("usage: plan_bench eval … | plan_bench gemm …");
            std::process::exit(2);
        }
    }
}
