//! The `cairn` command as a user runs it.

use cairn_tests::component_path;
use std::process::Command;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");

fn cairn(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(CAIRN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn simulate_prints_the_timeline_of_both_branches() {
    let wasm = component_path("welcome_series");
    let wasm = wasm.to_str().unwrap();
    let (ok, out, err) = cairn(&["simulate", wasm, "--user", r#"{"id":"ada","name":"Ada"}"#]);
    assert!(ok, "{err}");
    assert!(out.contains("sleep until +1d 00:00:00"), "{out}");
    assert!(
        out.contains("wait for purchased until +4d 00:00:00"),
        "{out}"
    );
    assert!(out.contains("reminder"), "{out}");
    assert!(
        out.contains("final: completed after 3 steps; 3 message(s)"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.json");
    std::fs::write(
        &events,
        r#"[{"at": "2d", "name": "purchased", "properties": {"item": "boots"}}]"#,
    )
    .unwrap();
    let (ok, out, err) = cairn(&[
        "simulate",
        wasm,
        "--user",
        r#"{"id":"ada"}"#,
        "--events",
        events.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("by event:purchased"), "{out}");
    assert!(out.contains("thank-you"), "{out}");
}

#[test]
fn bad_input_to_the_cli_is_refused_with_a_reason() {
    let wasm = component_path("welcome_series");
    let wasm = wasm.to_str().unwrap();
    let (ok, _, err) = cairn(&["simulate", wasm, "--user", "not json"]);
    assert!(!ok);
    assert!(err.contains("--user is not JSON"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.json");
    std::fs::write(&events, r#"[{"at": "2 weeks", "name": "x"}]"#).unwrap();
    let (ok, _, err) = cairn(&["simulate", wasm, "--events", events.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("unknown unit"), "{err}");

    let not_wasm = dir.path().join("junk.wasm");
    std::fs::write(&not_wasm, b"junk").unwrap();
    let (ok, _, err) = cairn(&["simulate", not_wasm.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("not a valid WebAssembly binary"), "{err}");

    let (ok, _, err) = cairn(&["build", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("holds no journey sources cairn knows"),
        "{err}"
    );
}

#[test]
fn build_reports_the_compilers_error() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"broken\"\nedition = \"2024\"\n[lib]\ncrate-type = [\"cdylib\"]\n\
             [dependencies]\ncairn-journey = {{ path = {:?} }}\n[workspace]\n",
            sdk.canonicalize().unwrap()
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("src/lib.rs"),
        "fn oops() -> u32 { \"not a number\" }\n",
    )
    .unwrap();
    let target = dir.path().join("target");
    let (ok, _, err) = cairn(&[
        "build",
        dir.path().to_str().unwrap(),
        "--out",
        target.join("out").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("Rust build failed"), "{err}");
    assert!(err.contains("mismatched types"), "{err}");
}

/// `cairn build` on `dir` with the toolchains the test suite uses, overridden by `env`.
fn build_with(dir: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(CAIRN)
        .arg("build")
        .arg(dir)
        .env("CAIRN_NODE", env!("CAIRN_TEST_NODE"))
        .env("CAIRN_COMPONENTIZE_PY", env!("CAIRN_TEST_COMPONENTIZE_PY"))
        .env("CAIRN_PYTHON", env!("CAIRN_TEST_PYTHON"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A journey project in `language` whose source is `code`.
fn project(language: &str, code: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = match language {
        "js" => {
            std::fs::write(
                dir.path().join("package.json"),
                r#"{"name": "broken-js", "main": "journey.js"}"#,
            )
            .unwrap();
            "journey.js"
        }
        "py" => "broken.py",
        _ => "broken.c",
    };
    std::fs::write(dir.path().join(file), code).unwrap();
    dir
}

#[test]
fn build_reports_each_languages_compiler_error() {
    let cases = [
        (
            "js",
            "import { journey } from \"cairn-journey\";\nexport default journey({ meta: { id: \"x\" }, async run(ctx) { await ctx.sleep(1 } });\n",
            ["JavaScript build failed", "journey.js"],
        ),
        (
            "py",
            "from cairn_journey import journey\n\ndef broken(:\n    pass\n",
            ["Python build failed", "SyntaxError"],
        ),
        (
            "c",
            "#include \"cairn.h\"\nint broken( { return 0; }\n",
            ["C build failed", "broken.c"],
        ),
    ];
    for (language, code, expected) in cases {
        let dir = project(language, code);
        let (ok, err) = build_with(dir.path(), &[]);
        assert!(!ok, "{language}");
        for text in expected {
            assert!(err.contains(text), "{language}: no {text:?} in {err}");
        }
    }
}

#[test]
fn build_names_the_missing_toolchain_and_how_to_install_it() {
    let cases = [
        ("js", "CAIRN_NODE", "install Node.js 18 or newer"),
        (
            "py",
            "CAIRN_COMPONENTIZE_PY",
            "pip install componentize-py==0.25.1",
        ),
        ("c", "CAIRN_PYTHON", "pip install ziglang==0.17.1"),
    ];
    for (language, variable, install) in cases {
        let dir = project(language, "");
        let (ok, err) = build_with(dir.path(), &[(variable, "/nonexistent/tool")]);
        assert!(!ok, "{language}");
        assert!(err.contains("/nonexistent/tool"), "{language}: {err}");
        assert!(err.contains("was not found"), "{language}: {err}");
        assert!(err.contains(install), "{language}: {err}");
    }
}

#[tokio::test]
async fn migrate_creates_the_schema_and_every_command_refuses_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cairn.db").display());
    let (ok, out, err) = cairn(&["migrate", "--db", &db]);
    assert!(ok, "{err}");
    assert!(out.contains("is at schema version 1"), "{out}");
    let (ok, _, err) = cairn(&["migrate", "--db", &db]);
    assert!(ok, "migrating twice changes nothing: {err}");

    // A newer cairn migrated it: refuse rather than write to a schema we do not know.
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (20991231000000, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    for args in [
        vec!["migrate", "--db", &db],
        vec!["serve", "--db", &db, "--listen", "127.0.0.1:0"],
        vec!["tenant", "list", "--db", &db],
    ] {
        let (ok, _, err) = cairn(&args);
        assert!(!ok, "{args:?} ran");
        assert!(
            err.contains("(version 20991231000000) is newer than this cairn's (version 1)"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn export_and_import_move_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", dir.path().join("from.db").display());
    let to = format!("sqlite://{}", dir.path().join("to.db").display());
    let file = dir.path().join("cairn.jsonl");
    let (ok, _, err) = cairn(&["tenant", "create", "acme", "--db", &from]);
    assert!(ok, "{err}");
    let (ok, _, err) = cairn(&["export", "--db", &from, "--out", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("exported"), "{err}");
    let (ok, _, err) = cairn(&["import", "--db", &to, "--file", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = cairn(&["tenant", "list", "--db", &to]);
    assert!(ok && out.contains("acme"), "{out}{err}");
    std::fs::write(&file, "{\"cairn_export\": 1, \"schema_version\": 99}\n").unwrap();
    let other = format!("sqlite://{}", dir.path().join("other.db").display());
    let (ok, _, err) = cairn(&["import", "--db", &other, "--file", file.to_str().unwrap()]);
    assert!(!ok && err.contains("schema version 99"), "{err}");
}
