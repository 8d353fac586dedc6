//! Values for evaluation: reading them from JSON objects and `.npy` arrays,
//! and writing tensors back as JSON (and `.npy`).
//!
//! The JSON encoding of a tensor: a number is order 0, an array of numbers
//! order 1 (a vector), an array of equal-length rows order 2 (a matrix), and
//! deeper rectangular nesting order 3 and up. Every error is an
//! [`ErrorKind::Value`] naming the file and the offending entry.

use super::tensor::{shape_string, Tensor};
use crate::error::{Error, ErrorKind, Result};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;

const JSON_HINT: &str = r#"a values file is a JSON object such as {"x": 1.5, "v": [1, 2], "A": [[1, 2], [3, 4]]}"#;
const ENTRY_HINT: &str = "a value is a number, an array of numbers (vector), an array of \
                          equal-length rows (matrix), or deeper rectangular nesting";

fn json_error(file: &str, msg: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Value, format!("values file `{file}`: {msg}"))
}

/// The top-level object, in file order, duplicates rejected.
struct Entries(Vec<(String, Value)>);

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object mapping variable names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!("`{key}` is given twice")));
            }
            let v: Value = map.next_value()?;
            out.push((key, v));
        }
        Ok(Entries(out))
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        d.deserialize_map(EntriesVisitor)
    }
}

fn syntax_error(file: &str, e: &serde_json::Error) -> Error {
    let msg = e.to_string();
    if msg.starts_with("number out of range") {
        json_error(
            file,
            format!(
                "the number at line {} column {} is too large for a 64-bit float",
                e.line(),
                e.column()
            ),
        )
        .hint("values must be finite")
    } else {
        Error::new(
            ErrorKind::Value,
            format!("values file `{file}` is not valid JSON: {msg}"),
        )
        .hint(JSON_HINT)
    }
}

fn parse_object(text: &str, file: &str) -> Result<Vec<(String, Value)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start().chars().next();
    let what = match first {
        None => return Err(json_error(file, "the file is empty").hint(JSON_HINT)),
        Some('{') => None,
        Some('[') => Some("an array"),
        Some('"') => Some("a string"),
        Some('t' | 'f') => Some("a boolean"),
        Some('n') => Some("null"),
        Some(_) => Some("a number"),
    };
    if let Some(what) = what {
        // Report broken JSON as such, and well-formed JSON of the wrong kind
        // as that.
        if let Err(e) = serde_json::from_str::<IgnoredAny>(text) {
            return Err(syntax_error(file, &e));
        }
        return Err(json_error(file, format!("the top level is {what}, not a JSON object")).hint(JSON_HINT));
    }
    match serde_json::from_str::<Entries>(text) {
        Ok(entries) => Ok(entries.0),
        Err(e) if e.classify() == serde_json::error::Category::Data => Err(json_error(file, e)),
        Err(e) => Err(syntax_error(file, &e)),
    }
}

/// Read a JSON object mapping variable names to values (see the module
/// docs for the encoding), in file order. `file_label` names the source in
/// messages (a path, `<stdin>`, …).
///
/// Errors ([`ErrorKind::Value`]): invalid JSON (with line and column), a top
/// level that is not an object, a name given twice, an entry that is not a
/// number (`W1[2][3]` is a string…), ragged nesting, empty arrays, numbers
/// that do not fit a finite `f64`.
pub fn values_from_json(text: &str, file_label: &str) -> Result<Vec<(String, Tensor)>> {
    parse_object(text, file_label)?
        .into_iter()
        .map(|(name, v)| {
            let t = json_to_tensor(&name, &v, file_label)?;
            Ok((name, t))
        })
        .collect()
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `W[1][2]`.
fn index_path(name: &str, idx: &[usize]) -> String {
    let mut s = name.to_string();
    for i in idx {
        s.push_str(&format!("[{i}]"));
    }
    s
}

struct Filler<'a> {
    name: &'a str,
    file: &'a str,
    shape: Vec<usize>,
    path: Vec<usize>,
    data: Vec<f64>,
}

impl Filler<'_> {
    fn error(&self, msg: String) -> Error {
        json_error(self.file, msg).hint(ENTRY_HINT)
    }

    fn here(&self) -> String {
        index_path(self.name, &self.path)
    }

    /// The first entry at the current depth, which fixed the expected shape.
    fn reference(&self) -> String {
        index_path(self.name, &vec![0; self.path.len()])
    }

    fn fill(&mut self, v: &Value) -> Result<()> {
        let depth = self.path.len();
        if depth == self.shape.len() {
            return match v {
                Value::Number(num) => match num.as_f64() {
                    Some(x) if x.is_finite() => {
                        self.data.push(x);
                        Ok(())
                    }
                    _ => Err(self.error(format!("`{}` = {num} is not a finite 64-bit float", self.here()))),
                },
                Value::Array(_) => Err(self.error(format!(
                    "`{}` is an array, but `{}` is a number (arrays must be rectangular)",
                    self.here(),
                    self.reference()
                ))),
                other => Err(self.error(format!("`{}` is {}, not a number", self.here(), describe(other)))),
            };
        }
        match v {
            Value::Array(items) => {
                let want = self.shape[depth];
                if items.is_empty() {
                    return Err(self.error(format!("`{}` is an empty array", self.here())));
                }
                if items.len() != want {
                    return Err(self.error(format!(
                        "`{}` has {} entries, but `{}` has {want} (rows must have equal length)",
                        self.here(),
                        items.len(),
                        self.reference()
                    )));
                }
                for (i, item) in items.iter().enumerate() {
                    self.path.push(i);
                    self.fill(item)?;
                    self.path.pop();
                }
                Ok(())
            }
            Value::Number(_) => Err(self.error(format!(
                "`{}` is a number, but `{}` is an array (arrays must be rectangular)",
                self.here(),
                self.reference()
            ))),
            other => Err(self.error(format!("`{}` is {}, not a number", self.here(), describe(other)))),
        }
    }
}

fn json_to_tensor(name: &str, v: &Value, file: &str) -> Result<Tensor> {
    // The shape is read off the first entries; `fill` checks the rest.
    let mut shape = Vec::new();
    let mut cur = v;
    while let Value::Array(items) = cur {
        match items.first() {
            Some(first) => {
                shape.push(items.len());
                cur = first;
            }
            None => {
                return Err(json_error(
                    file,
                    format!("`{}` is an empty array", index_path(name, &vec![0; shape.len()])),
                )
                .hint(ENTRY_HINT))
            }
        }
    }
    let cap = shape
        .iter()
        .try_fold(1usize, |a, &e| a.checked_mul(e))
        .unwrap_or(0)
        .min(1 << 20);
    let mut filler = Filler {
        name,
        file,
        shape,
        path: Vec::new(),
        data: Vec::with_capacity(cap),
    };
    filler.fill(v)?;
    Tensor::from_vec(filler.shape, filler.data)
}

fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Encode a tensor as JSON, the inverse of [`values_from_json`]'s encoding:
/// a number (order 0), an array (order 1), an array of rows (order 2), nested
/// arrays (order 3+). Non-finite entries become `null`; zero extents give
/// empty arrays (neither can be read back).
pub fn tensor_to_json(t: &Tensor) -> Value {
    fn build(shape: &[usize], data: &[f64]) -> Value {
        match shape.split_first() {
            None => number(data[0]),
            Some((&n, rest)) => {
                let inner: usize = rest.iter().product();
                Value::Array((0..n).map(|i| build(rest, &data[i * inner..(i + 1) * inner])).collect())
            }
        }
    }
    build(t.shape(), t.data())
}

// ---------------------------------------------------------------------------
// .npy
// ---------------------------------------------------------------------------

fn npy_error(label: &str, msg: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Value, format!("npy file `{label}`: {msg}"))
        .hint("write it with numpy.save (float or integer dtype, no zero-length axes)")
}

/// Read one array from the bytes of a `.npy` file; `label` names it in
/// messages.
///
/// Accepted dtypes: float64, float32 and signed/unsigned integers of 1–8
/// bytes, either endianness (64-bit integers beyond 2⁵³ are rounded). C and
/// Fortran order; any number of axes (a 0-d array is a scalar). Rejected
/// ([`ErrorKind::Value`]): malformed or truncated files, other dtypes, zero
/// extents, NaN or infinite entries.
pub fn value_from_npy(bytes: &[u8], label: &str) -> Result<Tensor> {
    use npyz::{DType, Order, TypeChar};
    let npy = npyz::NpyFile::new(bytes).map_err(|e| npy_error(label, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&e| usize::try_from(e))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| npy_error(label, "the array is too large"))?;
    if shape.len() > usize::from(u8::MAX) {
        return Err(npy_error(
            label,
            format!("the array has {} axes, too many", shape.len()),
        ));
    }
    if shape.contains(&0) {
        return Err(npy_error(
            label,
            format!("the array has shape {}, with an empty axis", shape_string(&shape)),
        )
        .hint("every extent must be at least 1"));
    }
    let fortran = npy.order() == Order::Fortran;
    let ts = match npy.dtype() {
        DType::Plain(ts) => ts,
        other => {
            return Err(npy_error(label, format!("unsupported dtype {}", other.descr()))
                .hint("only plain float64, float32 and integer arrays can be loaded"))
        }
    };
    let read = |e: std::io::Error| npy_error(label, format!("cannot read the data: {e}"));
    macro_rules! read_as {
        ($t:ty) => {
            npy.into_vec::<$t>()
                .map_err(read)?
                .into_iter()
                .map(|x| x as f64)
                .collect::<Vec<f64>>()
        };
    }
    let data: Vec<f64> = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 8) => npy.into_vec::<f64>().map_err(read)?,
        (TypeChar::Float, 4) => read_as!(f32),
        (TypeChar::Int, 1) => read_as!(i8),
        (TypeChar::Int, 2) => read_as!(i16),
        (TypeChar::Int, 4) => read_as!(i32),
        (TypeChar::Int, 8) => read_as!(i64),
        (TypeChar::Uint, 1) => read_as!(u8),
        (TypeChar::Uint, 2) => read_as!(u16),
        (TypeChar::Uint, 4) => read_as!(u32),
        (TypeChar::Uint, 8) => read_as!(u64),
        _ => {
            return Err(npy_error(label, format!("unsupported dtype `{ts}`"))
                .hint("only float64, float32 and integer arrays can be loaded"))
        }
    };
    let t = if fortran && shape.len() > 1 {
        // Fortran order is C order of the reversed shape: transpose back.
        let rev: Vec<usize> = shape.iter().rev().copied().collect();
        let labels: Vec<u8> = (0..shape.len() as u8).collect();
        let back: Vec<u8> = labels.iter().rev().copied().collect();
        let t = Tensor::from_vec(rev, data).map_err(|e| npy_error(label, e.message))?;
        super::tensor::permute_sum(&t, &labels, &back)
    } else {
        Tensor::from_vec(shape, data).map_err(|e| npy_error(label, e.message))?
    };
    if let Some(p) = t.data().iter().position(|x| !x.is_finite()) {
        let mut idx = vec![0; t.order()];
        let mut rem = p;
        for (d, &e) in t.shape().iter().enumerate().rev() {
            idx[d] = rem % e;
            rem /= e;
        }
        let what = if t.data()[p].is_nan() { "NaN" } else { "infinite" };
        return Err(npy_error(label, format!("entry {idx:?} is {what}")).hint("values must be finite"));
    }
    Ok(t)
}

/// Encode a tensor as a `.npy` file (little-endian float64, C order).
pub fn tensor_to_npy(t: &Tensor) -> Vec<u8> {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = t.shape().iter().map(|&e| e as u64).collect();
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::<f64>::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut buf)
        .begin_nd()
        .expect("writing to memory cannot fail");
    w.extend(t.data().iter().copied())
        .expect("writing to memory cannot fail");
    w.finish().expect("writing to memory cannot fail");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::{Order, WriterBuilder};

    fn t(shape: &[usize], data: &[f64]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), data.to_vec()).unwrap()
    }

    fn err(text: &str) -> Error {
        let e = values_from_json(text, "vals.json").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Value);
        assert!(e.message.contains("vals.json"), "{}", e.message);
        e
    }

    #[test]
    fn json_all_orders_in_file_order() {
        let text = r#"{
            "x": 1.5,
            "v": [1, 2, 3],
            "A": [[1, 2], [3, 4], [5, 6]],
            "T": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]],
            "a": -2e-3,
            "big": 18446744073709551615
        }"#;
        let vals = values_from_json(text, "vals.json").unwrap();
        let names: Vec<&str> = vals.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x", "v", "A", "T", "a", "big"]);
        assert_eq!(vals[0].1, Tensor::scalar(1.5));
        assert_eq!(vals[1].1, t(&[3], &[1., 2., 3.]));
        assert_eq!(vals[2].1, t(&[3, 2], &[1., 2., 3., 4., 5., 6.]));
        assert_eq!(vals[3].1, t(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]));
        assert_eq!(vals[4].1, Tensor::scalar(-2e-3));
        assert_eq!(vals[5].1, Tensor::scalar(18446744073709551615.0));
        assert!(values_from_json("{}", "f").unwrap().is_empty());
        assert_eq!(
            values_from_json("\u{feff}{\"y\": [[7]]}", "f").unwrap()[0].1,
            t(&[1, 1], &[7.])
        );
    }

    #[test]
    fn json_errors() {
        let e = err(r#"{"x": 1,}"#);
        assert!(
            e.message.contains("not valid JSON") && e.message.contains("line 1 column"),
            "{}",
            e.message
        );
        let e = err("{\n  \"x\": [1, 2\n}");
        assert!(e.message.contains("line 3"), "{}", e.message);
        let e = err("[1, 2]");
        assert!(e.message.contains("top level is an array"), "{}", e.message);
        let e = err("3");
        assert!(e.message.contains("top level is a number"), "{}", e.message);
        let e = err("[1, 2");
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = err("   ");
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = err(r#"{"x": 1, "x": 2}"#);
        assert!(e.message.contains("`x` is given twice"), "{}", e.message);
        let e = err(r#"{"W1": [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, "a"]]}"#);
        assert!(
            e.message.contains("`W1[2][3]` is a string, not a number"),
            "{}",
            e.message
        );
        let e = err(r#"{"b": [1, null]}"#);
        assert!(e.message.contains("`b[1]` is null"), "{}", e.message);
        let e = err(r#"{"b": true}"#);
        assert!(e.message.contains("`b` is a boolean"), "{}", e.message);
        let e = err(r#"{"b": {"c": 1}}"#);
        assert!(e.message.contains("`b` is an object"), "{}", e.message);
        let e = err(r#"{"A": [[1, 2], [3]]}"#);
        assert!(
            e.message.contains("`A[1]` has 1 entries, but `A[0]` has 2"),
            "{}",
            e.message
        );
        let e = err(r#"{"A": [[1, 2], 3]}"#);
        assert!(
            e.message.contains("`A[1]` is a number, but `A[0]` is an array"),
            "{}",
            e.message
        );
        let e = err(r#"{"A": [1, [2]]}"#);
        assert!(
            e.message.contains("`A[1]` is an array, but `A[0]` is a number"),
            "{}",
            e.message
        );
        let e = err(r#"{"A": []}"#);
        assert!(e.message.contains("`A` is an empty array"), "{}", e.message);
        let e = err(r#"{"A": [[], []]}"#);
        assert!(e.message.contains("`A[0]` is an empty array"), "{}", e.message);
        let e = err(r#"{"A": [[1], []]}"#);
        assert!(e.message.contains("`A[1]` is an empty array"), "{}", e.message);
        let e = err(r#"{"x": 1e400}"#);
        assert!(e.message.contains("too large"), "{}", e.message);
        let e = err(r#"{"x": [1, -1e999]}"#);
        assert!(e.message.contains("too large"), "{}", e.message);
        let e = err(r#"{"x": NaN}"#);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
    }

    #[test]
    fn json_round_trip() {
        let cases = [
            Tensor::scalar(-0.1),
            t(&[1], &[3.25]),
            t(&[3], &[1.0, 1e-300, -7.5e200]),
            t(&[2, 3], &[0.1, 0.2, 0.3, 1.0 / 3.0, 2.0f64.sqrt(), -5.0]),
            t(&[1, 1], &[42.0]),
            t(&[2, 1, 3], &[1., 2., 3., 4., 5., 6.]),
            t(&[2, 2, 1, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]),
        ];
        for (i, c) in cases.iter().enumerate() {
            let name = format!("v{i}");
            let text = serde_json::json!({ name.clone(): tensor_to_json(c) }).to_string();
            let back = values_from_json(&text, "rt.json").unwrap();
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].0, name);
            assert_eq!(back[0].1.shape(), c.shape());
            for (x, y) in back[0].1.data().iter().zip(c.data()) {
                // serde_json's default float parser may be off by one ulp.
                assert!((x - y).abs() <= 2.0 * f64::EPSILON * y.abs(), "{x} vs {y}");
            }
        }
        assert_eq!(tensor_to_json(&Tensor::scalar(2.0)), serde_json::json!(2.0));
        assert_eq!(
            tensor_to_json(&t(&[2, 2], &[1., 2., 3., 4.])),
            serde_json::json!([[1.0, 2.0], [3.0, 4.0]])
        );
        assert_eq!(tensor_to_json(&Tensor::scalar(f64::NAN)), Value::Null);
        assert_eq!(tensor_to_json(&Tensor::zeros(&[2, 0])), serde_json::json!([[], []]));
        assert_eq!(tensor_to_json(&Tensor::zeros(&[0, 2])), serde_json::json!([]));
    }

    fn npy_bytes<T: npyz::AutoSerialize + Copy>(shape: &[u64], data: &[T], order: Order) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(shape)
            .order(order)
            .writer(&mut buf)
            .begin_nd()
            .unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
        buf
    }

    #[test]
    fn npy_dtypes_and_orders() {
        let want = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let c = Order::C;
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1f64, 2., 3., 4., 5., 6.], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1f32, 2., 3., 4., 5., 6.], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1i64, 2, 3, 4, 5, 6], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1i32, 2, 3, 4, 5, 6], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1i16, 2, 3, 4, 5, 6], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1i8, 2, 3, 4, 5, 6], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1u8, 2, 3, 4, 5, 6], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1u16, 2, 3, 4, 5, 6], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1u32, 2, 3, 4, 5, 6], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[1u64, 2, 3, 4, 5, 6], c), "a").unwrap(),
            want
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3], &[-1i32, 0, 7, 4, 5, 6], c), "a")
                .unwrap()
                .data()[0],
            -1.0
        );
        // Fortran order: column by column.
        let f = npy_bytes(&[2, 3], &[1f64, 4., 2., 5., 3., 6.], Order::Fortran);
        assert_eq!(value_from_npy(&f, "a").unwrap(), want);
        let data3: Vec<f64> = (0..24).map(f64::from).collect();
        let c3 = value_from_npy(&npy_bytes(&[2, 3, 4], &data3, c), "a").unwrap();
        // Fortran data of the same 2×3×4 array: index (i,j,k) at i + 2j + 6k.
        let mut fdata = vec![0.0; 24];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    fdata[i + 2 * j + 6 * k] = c3.get(&[i, j, k]).unwrap();
                }
            }
        }
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 3, 4], &fdata, Order::Fortran), "a").unwrap(),
            c3
        );
        // Big-endian.
        let mut buf = Vec::new();
        let mut w = npyz::WriteOptions::<f64>::new()
            .dtype(npyz::DType::new_scalar(">f8".parse().unwrap()))
            .shape(&[3])
            .writer(&mut buf)
            .begin_nd()
            .unwrap();
        w.extend([1.0, -2.0, 0.5]).unwrap();
        w.finish().unwrap();
        assert_eq!(value_from_npy(&buf, "a").unwrap(), t(&[3], &[1.0, -2.0, 0.5]));
        // Orders 0, 1 and 4.
        assert_eq!(
            value_from_npy(&npy_bytes(&[], &[2.5f64], c), "a").unwrap(),
            Tensor::scalar(2.5)
        );
        assert_eq!(
            value_from_npy(&npy_bytes(&[1], &[2.5f64], c), "a").unwrap(),
            t(&[1], &[2.5])
        );
        let d4: Vec<f64> = (0..16).map(f64::from).collect();
        assert_eq!(
            value_from_npy(&npy_bytes(&[2, 2, 2, 2], &d4, c), "a").unwrap().shape(),
            &[2, 2, 2, 2]
        );
    }

    #[test]
    fn npy_errors() {
        let e = value_from_npy(b"not an npy file at all", "W.npy").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Value);
        assert!(
            e.message.contains("W.npy") && e.message.contains("not a valid .npy"),
            "{}",
            e.message
        );
        let good = npy_bytes(&[2, 3], &[1f64, 2., 3., 4., 5., 6.], Order::C);
        let e = value_from_npy(&good[..good.len() - 4], "W.npy").unwrap_err();
        assert!(e.message.contains("W.npy"), "{}", e.message);
        let e = value_from_npy(&npy_bytes(&[2, 2], &[1f64, f64::NAN, 3., 4.], Order::C), "W.npy").unwrap_err();
        assert!(e.message.contains("[0, 1] is NaN"), "{}", e.message);
        let e = value_from_npy(&npy_bytes(&[2], &[1f32, f32::INFINITY], Order::C), "W.npy").unwrap_err();
        assert!(e.message.contains("[1] is infinite"), "{}", e.message);
        let e = value_from_npy(&npy_bytes(&[2], &[true, false], Order::C), "W.npy").unwrap_err();
        assert!(e.message.contains("unsupported dtype `|b1`"), "{}", e.message);
        let e = value_from_npy(&npy_bytes::<f64>(&[3, 0], &[], Order::C), "W.npy").unwrap_err();
        assert!(e.message.contains("empty axis"), "{}", e.message);
    }

    #[test]
    fn npy_round_trip() {
        for x in [
            Tensor::scalar(-3.5),
            t(&[4], &[1., 2., 3., 4.]),
            t(&[2, 3], &[0.1, 0.2, 0.3, 1.0 / 3.0, 1e-300, -1e300]),
            t(&[2, 1, 2], &[1., 2., 3., 4.]),
        ] {
            assert_eq!(value_from_npy(&tensor_to_npy(&x), "rt").unwrap(), x);
        }
    }
}
