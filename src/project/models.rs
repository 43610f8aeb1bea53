//! Which generator, encoder and segmenter a project uses, and how a dissection's settings
//! record paths. The server and every command resolve a project's files here, one
//! function each, so they agree; the rules are in the [room's docs](super).

use std::path::{Path, PathBuf};

use super::{Project, ProjectError, ProjectLayer, DISSECT_FILE};
use crate::model::repo_path;

/// `project.json`: what a project folder names outright (paths relative to the folder).
#[derive(serde::Deserialize)]
struct ProjectFile {
    model: PathBuf,
    /// The encoder that inverts uploaded pictures (relative to the folder).
    #[serde(default)]
    encoder: Option<PathBuf>,
}

fn project_file(dir: &Path) -> Result<Option<ProjectFile>, ProjectError> {
    let path = dir.join("project.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ProjectError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let file: ProjectFile = serde_json::from_str(&text).map_err(|e| ProjectError::ProjectFile {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    Ok(Some(file))
}

/// The generator a project folder paints with: `project.json`'s `model` (relative to the
/// folder) when there is one, else the one `dissect.json`'s settings name. The server and
/// every command that works on a project resolve it here, so they agree.
pub fn generator_file(dissection: &Project) -> Result<PathBuf, ProjectError> {
    let dir = &dissection.dir;
    if let Some(file) = project_file(dir)? {
        return Ok(dir.join(file.model));
    }
    model_from_settings(dir, &dissection.settings).map_err(|why| ProjectError::Generator {
        path: dir.join(DISSECT_FILE).display().to_string(),
        why,
    })
}

/// The encoder that inverts pictures for a project folder: `project.json`'s `encoder`
/// (relative to the folder), else `dissect.json`'s `settings.encoder` (relative to the
/// repository), else `bundled` (the demo encoder, relative to the repository). The server
/// and `ganpaint invert` resolve it here; whether it fits the generator is checked when
/// it is loaded.
pub fn encoder_file(dissection: &Project, bundled: &str) -> Result<PathBuf, ProjectError> {
    if let Some(encoder) = project_file(&dissection.dir)?.and_then(|f| f.encoder) {
        return Ok(dissection.dir.join(encoder));
    }
    Ok(repo_path(dissection.setting("encoder").unwrap_or(bundled)))
}

/// A file a dissection's `settings` names (`key`: `segmenter`, say): the one `given`,
/// else the recorded one when it exists, else the bundled `default`.
pub fn setting_file(
    dissection: &Project,
    given: Option<&Path>,
    key: &str,
    default: &str,
) -> PathBuf {
    given.map(Path::to_path_buf).unwrap_or_else(|| {
        dissection
            .setting(key)
            .map(resolve_setting_path)
            .filter(|p| p.exists())
            .unwrap_or_else(|| repo_path(default))
    })
}

impl Project {
    /// The layer a command works on: the one named, else the [default
    /// layer](Project::default_layer).
    pub fn chosen_layer(&self, layer: Option<&str>) -> Result<&ProjectLayer, ProjectError> {
        match layer {
            Some(name) => self.layer(name),
            None => self.default_layer(),
        }
    }
}

/// The repository root: the first ancestor of the binary (or else the working directory)
/// with a `Cargo.toml`.
pub fn repo_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    let from_exe = exe.as_ref().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .find(|dir| dir.join("Cargo.toml").is_file())
            .map(Path::to_path_buf)
    });
    from_exe.or_else(|| {
        let cwd = std::env::current_dir().ok()?;
        cwd.join("Cargo.toml").is_file().then_some(cwd)
    })
}

/// A path as settings record it: relative to the repository root when inside it.
pub fn setting_path(path: &Path) -> String {
    let absolute = path
        .canonicalize()
        .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
    if let Some(root) = repo_root().and_then(|r| r.canonicalize().ok()) {
        if let Ok(relative) = absolute.strip_prefix(&root) {
            return relative.to_string_lossy().replace('\\', "/");
        }
    }
    absolute.display().to_string()
}

/// The inverse of [`setting_path`].
pub fn resolve_setting_path(recorded: &str) -> PathBuf {
    let path = Path::new(recorded);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    repo_root()
        .map(|root| root.join(path))
        .filter(|p| p.exists())
        .unwrap_or_else(|| repo_path(recorded))
}

// ---------------------------------------------------------------------------------------
// The generator named by `dissect.json`'s settings

/// What `settings.model` says, read without evaluating anything.
#[derive(Clone, Debug, PartialEq)]
enum ModelSetting {
    /// Ours: a weights file (relative to the repository).
    Path(String),
    /// GAN Dissection's `[netdissect.]proggan.from_pth_file('<file>')`.
    FromPthFile(String),
    /// `[netdissect.]proggan.ProgressiveGenerator(…)`: the architecture only; the weights
    /// come from `settings.pthfile` (ours infers the architecture from them).
    Constructor,
}

/// Why a setting is not understood; the caller adds the way out (`project.json`).
#[derive(Debug, PartialEq)]
struct NotUnderstood(String);

/// The generator's weights file named by `dissect.json`'s `settings`; see the [room's
/// docs](super).
/// Errors are one line, and every refusal names `project.json` as the way out.
fn model_from_settings(dir: &Path, settings: &serde_json::Value) -> Result<PathBuf, String> {
    let way_out = format!(
        "add {} with {{\"model\": \"<weights file, relative to that folder>\"}} to name the generator",
        dir.join("project.json").display()
    );
    let text_setting = |key: &str| -> Result<Option<&str>, String> {
        match settings.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!(
                "settings.{key} is {other}, not a string; {way_out}"
            )),
        }
    };
    if let Some(submodule) = text_setting("submodule")? {
        return Err(format!(
            "settings.submodule `{submodule}` (a part of a larger state_dict) is not supported; {way_out}"
        ));
    }
    let pthfile = text_setting("pthfile")?;
    let Some(model) = text_setting("model")? else {
        return match pthfile {
            Some(file) => resolve_gandissect_file(dir, "pthfile", file, &way_out),
            None => Err(format!("settings.model is missing; {way_out}")),
        };
    };
    let setting = parse_model_setting(model).map_err(|NotUnderstood(why)| {
        format!(
            "settings.model `{model}` is not understood ({why}); ganpaint never evaluates \
             Python, it reads only `netdissect.proggan.from_pth_file('<file>')` or a \
             `netdissect.proggan.ProgressiveGenerator(…)` with settings.pthfile; {way_out}"
        )
    })?;
    match (setting, pthfile) {
        (ModelSetting::Path(path), None) => {
            let found = repo_path(&path);
            if !found.is_file() {
                return Err(format!(
                    "settings.model `{path}` is no weights file (looked relative to the working \
                     directory and to the repository); {way_out}"
                ));
            }
            Ok(found)
        }
        (ModelSetting::Path(_), Some(_)) => Err(format!(
            "settings.model `{model}` is a path, but settings.pthfile is set too (GAN \
             Dissection wants a constructor there); {way_out}"
        )),
        (ModelSetting::Constructor, None) => Err(format!(
            "settings.model `{model}` builds a generator without weights and settings.pthfile \
             is not set; {way_out}"
        )),
        (_, Some(file)) => resolve_gandissect_file(dir, "pthfile", file, &way_out),
        (ModelSetting::FromPthFile(file), None) => {
            resolve_gandissect_file(dir, "model", &file, &way_out)
        }
    }
}

/// A file named in a GAN Dissection setting: as GAN Dissection opens it (relative to the
/// working directory, or absolute), else relative to the project folder.
fn resolve_gandissect_file(
    dir: &Path,
    key: &str,
    file: &str,
    way_out: &str,
) -> Result<PathBuf, String> {
    let given = PathBuf::from(file);
    if given.is_file() {
        return Ok(given);
    }
    if given.is_relative() {
        let in_folder = dir.join(&given);
        if in_folder.is_file() {
            return Ok(in_folder);
        }
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(format!(
            "settings.{key}: `{file}` is neither under the working directory ({cwd}) nor under \
             the project folder ({}); {way_out}",
            dir.display()
        ));
    }
    Err(format!("settings.{key}: `{file}` is not a file; {way_out}"))
}

/// Reads `settings.model`: a path when it has no parentheses (ours), else one of the two
/// GAN Dissection expressions understood. Never evaluates anything.
fn parse_model_setting(text: &str) -> Result<ModelSetting, NotUnderstood> {
    let text = text.trim();
    let Some(open) = text.find('(') else {
        if text.contains(')') {
            return Err(NotUnderstood("unbalanced parentheses".into()));
        }
        return Ok(ModelSetting::Path(text.to_string()));
    };
    let callee = text[..open].trim_end();
    let args = text[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| NotUnderstood("it is not a single call".into()))?;
    let names: Vec<&str> = callee.split('.').collect();
    if !names.iter().all(|n| is_identifier(n)) {
        return Err(NotUnderstood(format!("`{callee}` is not a dotted name")));
    }
    let (function, module) = names.split_last().expect("split yields one name at least");
    if module.last() != Some(&"proggan") {
        return Err(NotUnderstood(format!(
            "`{callee}` is not from netdissect.proggan"
        )));
    }
    match *function {
        "from_pth_file" => pth_file_argument(args).map(ModelSetting::FromPthFile),
        "ProgressiveGenerator" => {
            // Keyword and literal arguments only (`resolution=256`, `sizes=[…]`): they
            // describe the architecture, which the weights file gives anyway.
            let plain = args
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || "_=,.[]+-".contains(c));
            if plain {
                Ok(ModelSetting::Constructor)
            } else {
                Err(NotUnderstood(
                    "ProgressiveGenerator's arguments are not plain literals".into(),
                ))
            }
        }
        other => Err(NotUnderstood(format!(
            "proggan.{other} is not from_pth_file or ProgressiveGenerator"
        ))),
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `from_pth_file`'s one argument: a quoted file name (`'…'` or `"…"`, optionally
/// `filename=`, raw `r'…'` allowed) without escapes.
fn pth_file_argument(args: &str) -> Result<String, NotUnderstood> {
    let bad = |why: &str| NotUnderstood(format!("from_pth_file's argument {why}"));
    let mut rest = args.trim();
    if let Some(after) = rest.strip_prefix("filename") {
        rest = after
            .trim_start()
            .strip_prefix('=')
            .ok_or_else(|| bad("is not `filename=<string>`"))?
            .trim_start();
    }
    rest = rest
        .strip_prefix('r')
        .or_else(|| rest.strip_prefix('R'))
        .unwrap_or(rest);
    let quote = rest
        .chars()
        .next()
        .filter(|&c| c == '\'' || c == '"')
        .ok_or_else(|| bad("is not a quoted string"))?;
    let body = &rest[1..];
    let close = body
        .find(quote)
        .ok_or_else(|| bad("has no closing quote"))?;
    let (file, tail) = (&body[..close], &body[close + 1..]);
    let tail = tail.trim_start();
    let tail = tail.strip_prefix(',').unwrap_or(tail);
    if !tail.trim().is_empty() {
        return Err(bad("is not one string"));
    }
    if file.contains('\\') || file.contains('\n') {
        return Err(bad("has escapes"));
    }
    if file.is_empty() {
        return Err(bad("is empty"));
    }
    Ok(file.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ganpaint-project-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"weights").unwrap();
    }

    #[test]
    fn from_pth_file_is_read_in_every_spelling_gandissect_writes() {
        for text in [
            "netdissect.proggan.from_pth_file('models/church.pth')",
            "proggan.from_pth_file(\"models/church.pth\")",
            "  netdissect.proggan.from_pth_file( 'models/church.pth' , )  ",
            "netdissect.proggan.from_pth_file(filename = 'models/church.pth')",
            "netdissect.proggan.from_pth_file(r'models/church.pth')",
        ] {
            assert_eq!(
                parse_model_setting(text),
                Ok(ModelSetting::FromPthFile("models/church.pth".into())),
                "{text}"
            );
        }
        for text in [
            "netdissect.proggan.ProgressiveGenerator(resolution=256)",
            "proggan.ProgressiveGenerator(sizes=[512, 512, 256], output_tanh=True)",
            "netdissect.proggan.ProgressiveGenerator()",
        ] {
            assert_eq!(
                parse_model_setting(text),
                Ok(ModelSetting::Constructor),
                "{text}"
            );
        }
        assert_eq!(
            parse_model_setting("models/demo_generator.safetensors"),
            Ok(ModelSetting::Path(
                "models/demo_generator.safetensors".into()
            ))
        );
    }

    #[test]
    fn any_other_expression_is_refused_unevaluated() {
        for text in [
            "torchvision.models.alexnet(pretrained=True)",
            "from_pth_file('x.pth')",
            "netdissect.proggan.from_pth_file(open('x').read())",
            "netdissect.proggan.from_pth_file('a' + 'b')",
            "netdissect.proggan.from_pth_file('a\\\\b.pth')",
            "netdissect.proggan.from_pth_file('')",
            "netdissect.proggan.from_pth_file('x.pth'); __import__('os')",
            "netdissect.proggan.from_state_dict(torch.load('x.pth'))",
            "netdissect.proggan.ProgressiveGenerator(resolution=__import__('os').getpid())",
            "__import__('os').system('true')",
            "netdissect.proggan.from_pth_file('x.pth'",
        ] {
            assert!(parse_model_setting(text).is_err(), "{text}");
        }
    }

    #[test]
    fn gandissect_files_resolve_from_the_working_directory_then_the_project_folder() {
        let dir = temp_dir("resolve");
        let project = dir.join("data/church");
        touch(&project.join("models/church.pth"));
        let settings = json!({ "model": "netdissect.proggan.from_pth_file('models/church.pth')" });
        // Not under the working directory (the crate root): found in the project folder.
        assert_eq!(
            model_from_settings(&project, &settings).unwrap(),
            project.join("models/church.pth")
        );
        // Under the working directory: that one, as GAN Dissection opens it.
        let in_cwd = json!({ "model": "netdissect.proggan.from_pth_file('Cargo.toml')" });
        touch(&project.join("Cargo.toml"));
        assert_eq!(
            model_from_settings(&project, &in_cwd).unwrap(),
            PathBuf::from("Cargo.toml")
        );
        // Absolute paths are taken as they are.
        let absolute = project.join("models/church.pth");
        let settings =
            json!({ "model": format!("proggan.from_pth_file('{}')", absolute.display()) });
        assert_eq!(model_from_settings(&project, &settings).unwrap(), absolute);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pthfile_names_the_weights_and_wins_over_from_pth_file() {
        let dir = temp_dir("pthfile");
        touch(&dir.join("weights/g.pth"));
        touch(&dir.join("other.pth"));
        for model in [
            json!("netdissect.proggan.ProgressiveGenerator(resolution=32)"),
            json!("netdissect.proggan.from_pth_file('other.pth')"),
            serde_json::Value::Null,
        ] {
            let settings = json!({ "model": model, "pthfile": "weights/g.pth", "submodule": null });
            assert_eq!(
                model_from_settings(&dir, &settings).unwrap(),
                dir.join("weights/g.pth"),
                "{model}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals_are_one_line_and_name_project_json() {
        let dir = temp_dir("refusals");
        touch(&dir.join("g.pth"));
        let cases = [
            (
                json!({ "model": "torchvision.models.alexnet(pretrained=True)" }),
                "never evaluates",
            ),
            (
                json!({ "model": "netdissect.proggan.ProgressiveGenerator(resolution=32)" }),
                "without weights",
            ),
            (
                json!({ "model": "netdissect.proggan.from_pth_file('nowhere/g.pth')" }),
                "neither under the working directory",
            ),
            (
                json!({ "model": "nowhere/g.safetensors" }),
                "no weights file",
            ),
            (
                json!({ "model": "netdissect.proggan.from_pth_file('g.pth')", "submodule": "generator" }),
                "submodule",
            ),
            (json!({ "pthfile": 3 }), "not a string"),
            (json!({}), "settings.model is missing"),
        ];
        for (settings, expected) in cases {
            let error = model_from_settings(&dir, &settings)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{settings}: {error}");
            assert!(error.contains("project.json"), "{settings}: {error}");
            assert!(!error.contains('\n'), "{settings}: {error}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
