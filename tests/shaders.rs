//! Every WGSL program parses and validates with naga, without any adapter; every file under
//! `shaders/` is part of one; and the Rust parameter structs match the shaders' `Params`.

use naga::valid::{Capabilities, ValidationFlags, Validator};

fn parse(name: &str, src: &str) -> naga::Module {
    naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)))
}

#[test]
fn every_shader_parses_and_validates() {
    let sources = wgrad::shader_sources();
    assert!(sources.len() >= 8, "expected every shader family to be listed");
    let mut entry_points = 0;
    for (name, src) in sources {
        let module = parse(name, src);
        // Only the families listed as using subgroups may need that capability.
        let caps = if wgrad::SUBGROUP_SHADERS.contains(name) {
            Capabilities::SUBGROUP
        } else {
            Capabilities::empty()
        };
        Validator::new(ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
        entry_points += module.entry_points.len();
    }
    eprintln!(
        "{} shader families, {entry_points} entry points validated",
        sources.len()
    );
}

#[test]
fn every_shader_file_is_embedded_and_documented() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                wgrad::shader_sources()
                    .iter()
                    .any(|(_, src)| src.contains(text.as_str())),
                "{} is not part of any shader family",
                path.display()
            );
            assert!(
                text.trim_start().starts_with("//"),
                "{} must open with a comment naming its bindings",
                path.display()
            );
        }
    }
}

/// Each family's Rust parameter struct (one definition, `wgsl_params!`) against naga's
/// reflection of the shader's `Params`: the same fields, in the same order, at the same byte
/// offsets and sizes. A field added on one side only fails here, not as a wrong number.
#[test]
fn rust_params_match_the_shaders() {
    let layouts = wgrad::backend::gpu::params_layouts();
    for (name, src) in wgrad::shader_sources() {
        let module = parse(name, src);
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))
            .unwrap_or_else(|| panic!("{name} has no struct Params"));
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("{name}: Params is not a struct");
        };
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let shader: Vec<(String, usize, usize)> = members
            .iter()
            .map(|m| {
                let size = layouter[m.ty].size as usize;
                (m.name.clone().unwrap_or_default(), m.offset as usize, size)
            })
            .collect();
        let (_, rust) = layouts
            .iter()
            .find(|(s, _)| s == name)
            .unwrap_or_else(|| panic!("no Rust parameter struct for shader family {name}"));
        let rust: Vec<(String, usize, usize)> = rust.iter().map(|(n, o, s)| (n.to_string(), *o, *s)).collect();
        assert_eq!(
            rust, shader,
            "{name}: Rust params (left) differ from the WGSL Params (right)"
        );
        let rust_size: usize = rust.last().map(|(_, o, s)| o + s).unwrap_or(0);
        assert!(
            rust_size <= *span as usize,
            "{name}: the Rust struct ({rust_size} bytes) is larger than WGSL's ({span})"
        );
    }
}

/// The generated activation functions cover every unary op, and an unknown code is NaN.
#[test]
fn activation_functions_are_generated_for_every_unary_op() {
    let (_, src) = &wgrad::shader_sources()[0];
    for op in wgrad::UnaryOp::all(1.0) {
        assert!(
            src.contains(&format!("// {}\n", op.name())),
            "unary_f / unary_df have no case for {}",
            op.name()
        );
    }
    assert!(src.contains("default: { return nan(); }"));
}
