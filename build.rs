//! Build script: compiles the C shim against the installed FreeRADIUS headers and generates
//! the Rust view of `include/rlm_rust.h` with bindgen.
//!
//! The shim is only reachable through the `rlm_rust` data symbol, which nothing in Rust
//! references; rustc would drop it from the cdylib and hide it. `--undefined` pulls the
//! object in and a second version script exports the symbol (ARCHITECTURE.md).

use std::env;
use std::path::{Path, PathBuf};

fn freeradius_include_dir(manifest: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("FREERADIUS_INCLUDE_DIR") {
        return PathBuf::from(dir);
    }
    let local = manifest.join(".deps/freeradius-include");
    if local.join("freeradius/radiusd.h").exists() {
        return local;
    }
    PathBuf::from("/usr/include")
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let include = manifest.join("include");
    let fr_include = freeradius_include_dir(&manifest);

    println!("cargo:rerun-if-env-changed=FREERADIUS_INCLUDE_DIR");
    println!("cargo:rerun-if-changed=include/rlm_rust.h");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed={}", fr_include.display());

    for needed in ["radiusd.h", "modules.h", "log.h", "tmpl.h"] {
        if !fr_include.join("freeradius").join(needed).exists() {
            panic!(
                "FreeRADIUS header freeradius/{needed} not found under {}.\n\
                 Debian's libfreeradius-dev lacks some headers: run scripts/freeradius-headers.sh \
                 (or scripts/setup.sh), or set FREERADIUS_INCLUDE_DIR to a complete include tree.",
                fr_include.display()
            );
        }
    }
    // The shim includes <freeradius-devel/...> like in-tree modules do.
    let compat = out.join("fr-compat");
    let devel = compat.join("freeradius-devel");
    if !devel.exists() {
        std::fs::create_dir_all(&compat).expect("create OUT_DIR/fr-compat");
        std::os::unix::fs::symlink(fr_include.join("freeradius"), &devel).expect("symlink freeradius-devel");
    }

    cc::Build::new()
        .file("csrc/rlm_rust_shim.c")
        .file("csrc/tls_hook.c")
        .include(&include)
        .include(&compat)
        .include(&fr_include)
        .define("IS_MODULE", None)
        .define("NDEBUG", None) // Debian's radiusd is built with it; it changes some structs.
        .flag("-include")
        .flag("freeradius-devel/build.h")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("rlm_rust_shim");

    let export_map = out.join("rlm_rust.exports");
    std::fs::write(&export_map, "{ global: rlm_rust; };\n").expect("write export map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--undefined=rlm_rust");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", export_map.display());

    bindgen::Builder::default()
        .header(include.join("rlm_rust.h").to_string_lossy())
        .allowlist_type("rlm_rust_.*")
        .allowlist_var("RLM_RUST_.*")
        .rustified_enum("rlm_rust_verdict")
        .constified_enum_module("rlm_rust_log_level")
        .constified_enum_module("rlm_rust_capture_source")
        .constified_enum_module("rlm_rust_stage")
        .derive_default(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen over include/rlm_rust.h")
        .write_to_file(out.join("boundary.rs"))
        .expect("write boundary.rs");
}
