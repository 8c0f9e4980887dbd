//! `hookyard plugin new`: a plugin skeleton that builds as generated, in the
//! language the user picks, with the WIT contract copied in.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The plugin contract, embedded so a skeleton works outside this repo.
const WIT: &str = include_str!("../../wit/plugin.wit");

struct Template {
    files: &'static [(&'static str, &'static str)],
    executable: &'static [&'static str],
}

fn template(lang: &str) -> Result<Template> {
    Ok(match lang {
        "rust" => Template {
            files: &[
                ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
                ("src/lib.rs", include_str!("templates/rust/lib.rs")),
                ("build.sh", include_str!("templates/rust/build.sh")),
                ("README.md", include_str!("templates/rust/README.md")),
            ],
            executable: &["build.sh"],
        },
        "python" => Template {
            files: &[
                ("app.py", include_str!("templates/python/app.py")),
                (
                    "requirements.txt",
                    include_str!("templates/python/requirements.txt"),
                ),
                ("build.sh", include_str!("templates/python/build.sh")),
                ("README.md", include_str!("templates/python/README.md")),
            ],
            executable: &["build.sh"],
        },
        "js" => Template {
            files: &[
                ("{{name}}.js", include_str!("templates/js/plugin.js")),
                ("package.json", include_str!("templates/js/package.json")),
                (
                    "componentize.mjs",
                    include_str!("templates/js/componentize.mjs"),
                ),
                ("build.sh", include_str!("templates/js/build.sh")),
                ("README.md", include_str!("templates/js/README.md")),
            ],
            executable: &["build.sh"],
        },
        "c" => Template {
            files: &[
                ("plugin.c", include_str!("templates/c/plugin.c")),
                ("build.sh", include_str!("templates/c/build.sh")),
                ("README.md", include_str!("templates/c/README.md")),
                (
                    "tools/wasi-adapter/Cargo.toml",
                    include_str!("../../plugins/c/tools/wasi-adapter/Cargo.toml"),
                ),
                (
                    "tools/wasi-adapter/src/main.rs",
                    include_str!("../../plugins/c/tools/wasi-adapter/src/main.rs"),
                ),
            ],
            executable: &["build.sh"],
        },
        other => bail!("--lang {other:?}: expected one of {}", LANGS.join(", ")),
    })
}

/// Languages `plugin new` can generate.
pub const LANGS: &[&str] = &["rust", "python", "js", "c"];

/// Writes the skeleton into `dir/name` and returns that path.
pub fn run(name: &str, lang: &str, dir: &Path) -> Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        bail!(
            "plugin name {name:?}: use lower-case letters, digits and '-', starting with a letter"
        );
    }
    let t = template(lang)?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let crate_name = name.replace('-', "_");
    let fill = |s: &str| {
        s.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
    };
    for (path, text) in t.files {
        write(&root.join(fill(path)), &fill(text))?;
    }
    write(&root.join("wit/plugin.wit"), WIT)?;
    #[cfg(unix)]
    for path in t.executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(root)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
