//! Every WGSL file parses and validates with naga, without any adapter.

use naga::valid::{Capabilities, ValidationFlags, Validator};

#[test]
fn every_shader_parses_and_validates() {
    assert!(wgrad::SHADERS.len() >= 8, "expected every shader family to be listed");
    let mut entry_points = 0;
    for (name, src) in wgrad::SHADERS {
        let module =
            naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
        // Only the families listed as using subgroups may need that capability.
        let caps = if wgrad::SUBGROUP_SHADERS.contains(name) {
            Capabilities::SUBGROUP
        } else {
            Capabilities::empty()
        };
        Validator::new(ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
        assert!(!module.entry_points.is_empty(), "{name}.wgsl has no entry point");
        entry_points += module.entry_points.len();
        assert!(
            src.trim_start().starts_with("//"),
            "{name}.wgsl must open with a comment naming its bindings"
        );
    }
    eprintln!(
        "{} shader files, {entry_points} entry points validated",
        wgrad::SHADERS.len()
    );
}

#[test]
fn every_shader_file_is_embedded() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            // Listed as a family, or embedded in front of one (a shared prelude).
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                wgrad::SHADERS.iter().any(|(_, src)| src.contains(text.as_str())),
                "{} is not embedded in any of SHADERS",
                path.display()
            );
        }
    }
}
