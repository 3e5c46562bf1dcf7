//! Portability without the hardware: every WGSL entry point, with every set of
//! pipeline-overridable constants the code uses, is validated by naga with the capabilities a
//! typical adapter has and written out as SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and
//! GLSL ES 3.1 compute (GL). A failure names the shader, entry point, constants and target.
//! Shader families that use subgroup operations (`SUBGROUP_SHADERS`) are validated with the
//! `SUBGROUP` capability and written for the first versions that have them (SPIR-V 1.3, MSL
//! 2.1, HLSL SM 6.0, GLSL ES 3.1 with `GL_KHR_shader_subgroup`).

use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{Module, ShaderStage};

/// Writes one entry point of a validated module in a target language; `sg`: it uses subgroups.
type Backend = fn(&Module, &ModuleInfo, &str, bool) -> Result<(), String>;

fn validate(module: &Module, sg: bool) -> Result<ModuleInfo, String> {
    // No other optional capability: a shader needing one (f16, f64, or subgroups outside the
    // subgroup families) must be caught here.
    let caps = if sg {
        Capabilities::SUBGROUP
    } else {
        Capabilities::empty()
    };
    Validator::new(ValidationFlags::all(), caps)
        .validate(module)
        .map_err(|e| format!("{e:?}"))
}

fn spirv(m: &Module, info: &ModuleInfo, entry: &str, sg: bool) -> Result<(), String> {
    let mut opts = naga::back::spv::Options::default();
    if sg {
        opts.lang_version = (1, 3);
    }
    let pipe = naga::back::spv::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.into(),
    };
    naga::back::spv::write_vec(m, info, &opts, Some(&pipe))
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

fn msl(m: &Module, info: &ModuleInfo, entry: &str, _sg: bool) -> Result<(), String> {
    let opts = naga::back::msl::Options {
        lang_version: (2, 1),
        ..Default::default()
    };
    let pipe = naga::back::msl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.into())),
        ..Default::default()
    };
    naga::back::msl::write_string(m, info, &opts, &pipe)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

fn hlsl(m: &Module, info: &ModuleInfo, entry: &str, sg: bool) -> Result<(), String> {
    let opts = naga::back::hlsl::Options {
        shader_model: if sg {
            naga::back::hlsl::ShaderModel::V6_0
        } else {
            naga::back::hlsl::ShaderModel::V5_1
        },
        ..Default::default()
    };
    let pipe = naga::back::hlsl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.into())),
    };
    let mut out = String::new();
    naga::back::hlsl::Writer::new(&mut out, &opts, &pipe)
        .write(m, info, None)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

fn glsl(m: &Module, info: &ModuleInfo, entry: &str, _sg: bool) -> Result<(), String> {
    let opts = naga::back::glsl::Options {
        version: naga::back::glsl::Version::Embedded {
            version: 310,
            is_webgl: false,
        },
        ..Default::default()
    };
    let pipe = naga::back::glsl::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.into(),
        multiview: None,
    };
    let mut out = String::new();
    let mut w = naga::back::glsl::Writer::new(
        &mut out,
        m,
        info,
        &opts,
        &pipe,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .map_err(|e| format!("{e:?}"))?;
    w.write().map(|_| ()).map_err(|e| format!("{e:?}"))
}

#[test]
fn every_entry_point_translates_to_every_backend() {
    let variants = wgrad::backend::gpu::pipeline_variants();
    assert!(
        variants.len() >= 20,
        "expected every kernel variant, got {}",
        variants.len()
    );
    let targets: [(&str, Backend); 4] = [("SPIR-V", spirv), ("MSL", msl), ("HLSL", hlsl), ("GLSL ES 3.1", glsl)];
    let mut failures = Vec::new();
    let mut done = 0;
    for v in &variants {
        let src = wgrad::shader_sources()
            .iter()
            .find(|(n, _)| *n == v.shader)
            .map(|(_, s)| s.as_str())
            .expect("variant names a listed shader");
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{}.wgsl: {}", v.shader, e.emit_to_string(src)));
        let sg = wgrad::SUBGROUP_SHADERS.contains(&v.shader);
        let info = validate(&module, sg).unwrap_or_else(|e| panic!("{}.wgsl: {e}", v.shader));
        let mut constants = PipelineConstants::default();
        for (k, val) in &v.constants {
            constants.insert(k.to_string(), *val);
        }
        let (m, i) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some((ShaderStage::Compute, v.entry)),
            &constants,
        )
        .unwrap_or_else(|e| panic!("{}::{} {:?}: overrides: {e:?}", v.shader, v.entry, v.constants));
        for (target, write) in &targets {
            match write(&m, &i, v.entry, sg) {
                Ok(()) => done += 1,
                Err(e) => failures.push(format!(
                    "{}.wgsl::{} {:?} → {target}: {e}",
                    v.shader, v.entry, v.constants
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} translations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} pipeline variants × 4 targets = {done} translations passed",
        variants.len()
    );
}
