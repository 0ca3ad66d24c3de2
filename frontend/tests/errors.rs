//! Bad input gets a clear error, never a panic: each case checks that the message
//! names the problem (node, op, shapes, file, input) and says what to do.

use kiln_frontend::proto::{
    attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use kiln_frontend::{import_file, import_model, Bindings, ImportError};
use kiln_ir::{DType, Tensor};
use prost::Message;
use std::path::{Path, PathBuf};

fn dims(d: &[&str]) -> Vec<Dimension> {
    d.iter()
        .map(|s| Dimension {
            value: Some(match s.parse::<i64>() {
                Ok(v) => dimension::Value::DimValue(v),
                Err(_) => dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect()
}

fn vi(name: &str, elem: i32, shape: &[&str]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto { dim: dims(shape) }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            input: inputs,
            output: outputs,
            initializer: inits,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn f32_init(name: &str, shape: &[usize], vals: &[f32]) -> TensorProto {
    let f: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
    kiln_frontend::tensor_to_proto(name, &Tensor::from_f64(DType::F32, shape.to_vec(), &f))
}

fn err(m: &ModelProto, dir: Option<&Path>, b: &Bindings) -> String {
    match import_model(m, dir, b) {
        Ok(_) => panic!("import unexpectedly succeeded"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} should mention {p:?}");
    }
}

const F32: i32 = 1;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-frontend-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn unsupported_op_names_op_node_domain_and_list() {
    let m = model(
        vec![node("Einsum", "my_einsum", &["x"], &["y"])],
        vec![vi("x", F32, &["2"])],
        vec![vi("y", F32, &["2"])],
        vec![],
    );
    let e = err(&m, None, &Bindings::default());
    assert_has(
        &e,
        &[
            "my_einsum",
            "Einsum",
            "ai.onnx",
            "opset 17",
            "supported ops",
            "MatMul",
        ],
    );
    let mut custom = node("Foo", "custom", &["x"], &["y"]);
    custom.domain = Some("com.example".into());
    let m = model(
        vec![custom],
        vec![vi("x", F32, &["2"])],
        vec![vi("y", F32, &["2"])],
        vec![],
    );
    assert_has(
        &err(&m, None, &Bindings::default()),
        &["com.example", "Foo"],
    );
}

#[test]
fn shape_mismatch_names_node_and_both_shapes() {
    let m = model(
        vec![node("MatMul", "proj", &["x", "w"], &["y"])],
        vec![vi("x", F32, &["2", "3"])],
        vec![vi("y", F32, &["2", "5"])],
        vec![f32_init("w", &[4, 5], &[0.0; 20])],
    );
    let e = err(&m, None, &Bindings::default());
    assert_has(&e, &["proj", "MatMul", "[2, 3]", "[4, 5]"]);
}

#[test]
fn dtype_mismatch_names_node_and_types() {
    let i64_init =
        kiln_frontend::tensor_to_proto("k", &Tensor::from_i64(DType::I64, vec![3], &[1, 2, 3]));
    let m = model(
        vec![node("Add", "mixed_add", &["x", "k"], &["y"])],
        vec![vi("x", F32, &["3"])],
        vec![vi("y", F32, &["3"])],
        vec![i64_init],
    );
    assert_has(
        &err(&m, None, &Bindings::default()),
        &["mixed_add", "f32[3]", "i64[3]"],
    );
}

#[test]
fn unbound_symbolic_dim_says_which_flag_to_pass() {
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![vi("x", F32, &["batch", "3"])],
        vec![vi("y", F32, &["batch", "3"])],
        vec![],
    );
    let e = err(&m, None, &Bindings::default());
    assert_has(&e, &["'x'", "batch", "--dim batch=N", "--shape x="]);
    let mut b = Bindings::default();
    b.dims.insert("batch".into(), 4);
    let g = import_model(&m, None, &b).unwrap().graph;
    assert_eq!(g.value(g.inputs[0]).ty.shape, vec![4, 3]);
    let mut b = Bindings::default();
    b.shapes.insert("nope".into(), vec![1]);
    assert_has(&err(&m, None, &b), &["nope", "not an input", "inputs: x"]);
    let mut b = Bindings::default();
    b.shapes.insert("x".into(), vec![2, 7]);
    assert_has(&err(&m, None, &b), &["dim 1 is fixed to 3"]);
}

#[test]
fn shape_input_without_value_names_the_graph_input() {
    let m = model(
        vec![node("Reshape", "rs", &["x", "target"], &["y"])],
        vec![vi("x", F32, &["6"]), vi("target", 7, &["2"])],
        vec![vi("y", F32, &["2", "3"])],
        vec![],
    );
    let e = err(&m, None, &Bindings::default());
    assert_has(&e, &["rs", "Reshape", "input 1", "'target'", "--input"]);
    let mut b = Bindings::default();
    b.values.insert(
        "target".into(),
        Tensor::from_i64(DType::I64, vec![2], &[2, 3]),
    );
    let imp = import_model(&m, None, &b).unwrap();
    assert_eq!(imp.frozen, vec!["target".to_string()]);
    assert_eq!(imp.graph.inputs.len(), 1);
}

#[test]
fn malformed_and_truncated_protobuf_are_decode_errors() {
    let dir = tmpdir("decode");
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![vi("x", F32, &["2"])],
        vec![vi("y", F32, &["2"])],
        vec![],
    );
    let bytes = m.encode_to_vec();
    let p = dir.join("trunc.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = import_file(&p, &Bindings::default())
        .unwrap_err()
        .to_string();
    assert_has(&e, &["trunc.onnx", "not a valid ONNX model"]);
    let p = dir.join("garbage.onnx");
    std::fs::write(&p, b"\xff\xff\xff\xff not protobuf").unwrap();
    assert_has(
        &import_file(&p, &Bindings::default())
            .unwrap_err()
            .to_string(),
        &["garbage.onnx", "not a valid ONNX model"],
    );
    let e = import_file(&dir.join("missing.onnx"), &Bindings::default())
        .unwrap_err()
        .to_string();
    assert_has(&e, &["missing.onnx", "cannot read"]);
}

fn external(name: &str, shape: &[i64], location: &str, extra: &[(&str, &str)]) -> TensorProto {
    let mut kv = vec![StringStringEntryProto {
        key: Some("location".into()),
        value: Some(location.into()),
    }];
    for (k, v) in extra {
        kv.push(StringStringEntryProto {
            key: Some(k.to_string()),
            value: Some(v.to_string()),
        });
    }
    TensorProto {
        name: Some(name.into()),
        data_type: Some(F32),
        dims: shape.to_vec(),
        data_location: Some(DataLocation::External as i32),
        external_data: kv,
        ..Default::default()
    }
}

fn ext_model(t: TensorProto) -> ModelProto {
    model(
        vec![node("Add", "add", &["x", "w"], &["y"])],
        vec![vi("x", F32, &["4"])],
        vec![vi("y", F32, &["4"])],
        vec![t],
    )
}

#[test]
fn external_data_missing_short_and_escaping_are_rejected() {
    let dir = tmpdir("ext");
    let b = Bindings::default();
    // Works when present and long enough.
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("w.bin"), &data).unwrap();
    let ok = import_model(
        &ext_model(external("w", &[4], "w.bin", &[])),
        Some(&dir),
        &b,
    )
    .unwrap();
    let w = ok.graph.constants().next().unwrap().1.to_f64_vec();
    assert_eq!(w, vec![1.0, 2.0, 3.0, 4.0]);
    // Missing file.
    assert_has(
        &err(
            &ext_model(external("w", &[4], "absent.bin", &[])),
            Some(&dir),
            &b,
        ),
        &["tensor 'w'", "absent.bin"],
    );
    // Short file (offset pushes the range past the end).
    assert_has(
        &err(
            &ext_model(external("w", &[4], "w.bin", &[("offset", "8")])),
            Some(&dir),
            &b,
        ),
        &["tensor 'w'", "too short", "offset 8"],
    );
    // Declared length disagrees with the shape.
    assert_has(
        &err(
            &ext_model(external("w", &[4], "w.bin", &[("length", "12")])),
            Some(&dir),
            &b,
        ),
        &["length 12"],
    );
    // Path traversal and absolute paths.
    for loc in ["../w.bin", "sub/../../w.bin", "/etc/passwd"] {
        assert_has(
            &err(&ext_model(external("w", &[4], loc, &[])), Some(&dir), &b),
            &["leaves the model's folder"],
        );
    }
    // A link inside the folder that points outside it.
    #[cfg(unix)]
    {
        let outside = tmpdir("ext-outside");
        std::fs::write(outside.join("secret.bin"), &data).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.bin"), dir.join("link.bin")).unwrap();
        assert_has(
            &err(
                &ext_model(external("w", &[4], "link.bin", &[])),
                Some(&dir),
                &b,
            ),
            &["outside the model's folder"],
        );
    }
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let huge = TensorProto {
        name: Some("w".into()),
        data_type: Some(F32),
        dims: vec![1 << 20, 1 << 20, 1 << 20],
        ..Default::default()
    };
    assert_has(
        &err(&ext_model(huge), None, &Bindings::default()),
        &["tensor 'w'", "GiB limit"],
    );
    let neg = TensorProto {
        name: Some("w".into()),
        data_type: Some(F32),
        dims: vec![-4],
        ..Default::default()
    };
    assert_has(
        &err(&ext_model(neg), None, &Bindings::default()),
        &["negative dimension"],
    );
    // An input bound to an absurd shape.
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![vi("x", F32, &["n", "n", "n"])],
        vec![vi("y", F32, &["n", "n", "n"])],
        vec![],
    );
    let mut b = Bindings::default();
    b.dims.insert("n".into(), 1 << 30);
    assert_has(&err(&m, None, &b), &["input 'x'", "GiB limit"]);
    // ConstantOfShape asked for a huge constant.
    let shape = kiln_frontend::tensor_to_proto(
        "s",
        &Tensor::from_i64(DType::I64, vec![2], &[1 << 15, 1 << 14]),
    );
    let mut cos = node("ConstantOfShape", "big", &["s"], &["y"]);
    cos.attribute.push(AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(f32_init("v", &[1], &[1.0])),
        ..Default::default()
    });
    let m = model(
        vec![cos],
        vec![],
        vec![vi("y", F32, &["32768", "16384"])],
        vec![shape],
    );
    assert_has(
        &err(&m, None, &Bindings::default()),
        &["big", "ConstantOfShape", "MiB"],
    );
}

#[test]
fn bad_attributes_and_missing_operands_name_the_node() {
    let mut t = node("Transpose", "tp", &["x"], &["y"]);
    t.attribute.push(AttributeProto {
        name: Some("perm".into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: vec![0, 0],
        ..Default::default()
    });
    let m = model(
        vec![t],
        vec![vi("x", F32, &["2", "3"])],
        vec![vi("y", F32, &["3", "2"])],
        vec![],
    );
    assert_has(
        &err(&m, None, &Bindings::default()),
        &["tp", "Transpose", "permutation"],
    );
    let m = model(
        vec![node("Add", "a", &["x", "nowhere"], &["y"])],
        vec![vi("x", F32, &["2"])],
        vec![vi("y", F32, &["2"])],
        vec![],
    );
    assert_has(
        &err(&m, None, &Bindings::default()),
        &["'a'", "nowhere", "not defined"],
    );
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![vi("x", F32, &["2"])],
        vec![vi("z", F32, &["2"])],
        vec![],
    );
    assert_has(&err(&m, None, &Bindings::default()), &["graph output 'z'"]);
}

#[test]
fn unsupported_opset_and_dtype_are_named() {
    let mut m = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![vi("x", F32, &["2"])],
        vec![vi("y", F32, &["2"])],
        vec![],
    );
    m.opset_import[0].version = Some(99);
    assert_has(&err(&m, None, &Bindings::default()), &["opset 99"]);
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![vi("x", 8, &["2"])],
        vec![vi("y", 8, &["2"])],
        vec![],
    );
    assert_has(
        &err(&m, None, &Bindings::default()),
        &["input 'x'", "STRING", "not supported"],
    );
}

#[test]
fn import_errors_are_values_not_panics() {
    // Every error is an ImportError the caller can match on.
    let e = import_model(&ModelProto::default(), None, &Bindings::default()).unwrap_err();
    assert!(matches!(e, ImportError::Graph(_)), "{e:?}");
}
