//! Building the browser demo's TypeScript client before `sealroom demo --web` serves it: on a
//! fresh clone `web/dist` does not exist yet, and after an edit or a pull it may be older
//! than `web/src`. The decision (what is missing or stale, which npm steps to run) is plain
//! code over the file tree; only [`ensure_built`] runs npm.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};

/// How the built client in `web/dist` compares with its sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DistState {
    /// `web/dist/src/index.js` does not exist: never built.
    Missing,
    /// A source (`web/src`, `tsconfig.json`, `package.json`) is newer than the oldest built
    /// file: built before the last edit.
    Stale {
        /// The newest source file.
        newest: PathBuf,
    },
    /// Built after every source changed.
    Fresh,
}

/// An npm command the build needs, run in `web/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NpmStep {
    /// `npm ci`: install the locked dev dependencies (TypeScript); `node_modules` is missing.
    Ci,
    /// `npm run build`: compile the client with `tsc`.
    Build,
}

impl NpmStep {
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::Ci => &["ci", "--no-audit", "--no-fund"],
            Self::Build => &["run", "build"],
        }
    }

    fn command_line(self) -> String {
        format!("npm {}", self.args().join(" "))
    }
}

/// The newest modification time among the files under `path` (a file or a directory, walked
/// recursively), and that file; `None` when there is no file.
fn newest(path: &Path) -> io::Result<Option<(SystemTime, PathBuf)>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    if meta.is_file() {
        return Ok(Some((meta.modified()?, path.to_owned())));
    }
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(path)? {
        if let Some(found) = newest(&entry?.path())?
            && best.as_ref().is_none_or(|(t, _)| found.0 > *t)
        {
            best = Some(found);
        }
    }
    Ok(best)
}

/// The oldest modification time among the `.js` files directly in `dir`.
fn oldest_js(dir: &Path) -> io::Result<Option<SystemTime>> {
    let mut oldest: Option<SystemTime> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "js") {
            let modified = entry.metadata()?.modified()?;
            oldest = Some(oldest.map_or(modified, |o| o.min(modified)));
        }
    }
    Ok(oldest)
}

/// Compare `web/dist/src` with the sources it is built from.
pub(crate) fn dist_state(web: &Path) -> io::Result<DistState> {
    let out = web.join("dist").join("src");
    if !out.join("index.js").is_file() {
        return Ok(DistState::Missing);
    }
    let Some(built) = oldest_js(&out)? else {
        return Ok(DistState::Missing);
    };
    let mut newest_source: Option<(SystemTime, PathBuf)> = None;
    for source in ["src", "tsconfig.json", "package.json"] {
        if let Some(found) = newest(&web.join(source))?
            && newest_source.as_ref().is_none_or(|(t, _)| found.0 > *t)
        {
            newest_source = Some(found);
        }
    }
    Ok(match newest_source {
        Some((modified, newest)) if modified > built => DistState::Stale { newest },
        _ => DistState::Fresh,
    })
}

/// The npm steps that bring `web/` from `state` to a fresh build.
pub(crate) fn steps(state: &DistState, web: &Path) -> Vec<NpmStep> {
    if *state == DistState::Fresh {
        return Vec::new();
    }
    let mut steps = Vec::new();
    if !web.join("node_modules").join("typescript").is_dir() {
        steps.push(NpmStep::Ci);
    }
    steps.push(NpmStep::Build);
    steps
}

/// What to tell a person whose machine lacks npm.
fn npm_missing(npm: &str, web: &Path) -> String {
    format!(
        "cannot build the page's TypeScript client: `{npm}` was not found. Install Node.js 20 or \
         later with npm (Debian or Ubuntu: `apt-get install nodejs npm`; elsewhere: \
         https://nodejs.org), then start the demo again; or build it by hand with \
         `cd {} && npm ci && npm run build`",
        web.display()
    )
}

/// Build the client in `web` when it is missing or stale, running `npm` (the program
/// name, so a test can name one that does not exist) with messages on stderr.
pub(crate) fn ensure_built(web: &Path, npm: &str) -> anyhow::Result<()> {
    let state = dist_state(web).with_context(|| {
        format!(
            "cannot compare {} with its sources",
            web.join("dist").display()
        )
    })?;
    let steps = steps(&state, web);
    if steps.is_empty() {
        return Ok(());
    }
    match &state {
        DistState::Missing => eprintln!(
            "sealroom demo --web: the page's TypeScript client is not built yet ({} is missing); building it",
            web.join("dist/src/index.js").display()
        ),
        DistState::Stale { newest } => eprintln!(
            "sealroom demo --web: the page's TypeScript client is older than {}; building it again",
            newest.display()
        ),
        DistState::Fresh => {}
    }
    for step in steps {
        eprintln!(
            "sealroom demo --web: running `{}` in {}",
            step.command_line(),
            web.display()
        );
        let status = match Command::new(npm)
            .args(step.args())
            .current_dir(web)
            .status()
        {
            Ok(status) => status,
            Err(err) if err.kind() == io::ErrorKind::NotFound => bail!(npm_missing(npm, web)),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot run `{}`", step.command_line()));
            }
        };
        if !status.success() {
            bail!(
                "`{}` in {} failed ({status}): see its output above; the page needs Node.js 20 \
                 or later (`node --version`), and `npm ci` needs the npm registry the first time",
                step.command_line(),
                web.display()
            );
        }
    }
    if dist_state(web)? == DistState::Missing {
        bail!(
            "`npm run build` in {} finished but {} is still missing",
            web.display(),
            web.join("dist/src/index.js").display()
        );
    }
    eprintln!("sealroom demo --web: the page's client is built");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::{File, FileTimes};
    use std::time::Duration;

    use super::*;

    /// A scratch `web/` tree, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "sealroom-web-build-{name}-{}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// Write `rel` with a modification time `secs` after an arbitrary epoch.
        fn file(&self, rel: &str, secs: u64) {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "x").unwrap();
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_times(FileTimes::new().set_modified(at))
                .unwrap();
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_fresh_clone_installs_then_builds() {
        let web = Tree::new("missing");
        web.file("src/index.ts", 10);
        web.file("package.json", 10);
        assert_eq!(dist_state(&web.0).unwrap(), DistState::Missing);
        assert_eq!(
            steps(&DistState::Missing, &web.0),
            [NpmStep::Ci, NpmStep::Build]
        );
        // A dist without the entry point is as good as none.
        web.file("dist/src/bytes.js", 20);
        assert_eq!(dist_state(&web.0).unwrap(), DistState::Missing);
    }

    #[test]
    fn a_source_newer_than_the_build_rebuilds_without_reinstalling() {
        let web = Tree::new("stale");
        web.file("src/index.ts", 10);
        web.file("src/nested/deep.ts", 30);
        web.file("dist/src/index.js", 20);
        web.file("dist/src/client.js", 25);
        web.file("node_modules/typescript/package.json", 5);
        let state = dist_state(&web.0).unwrap();
        assert_eq!(
            state,
            DistState::Stale {
                newest: web.0.join("src/nested/deep.ts")
            }
        );
        assert_eq!(steps(&state, &web.0), [NpmStep::Build]);
        // tsconfig.json counts as a source too.
        web.file("src/nested/deep.ts", 10);
        web.file("tsconfig.json", 21);
        assert!(matches!(
            dist_state(&web.0).unwrap(),
            DistState::Stale { .. }
        ));
    }

    #[test]
    fn a_build_newer_than_every_source_is_served_as_it_is() {
        let web = Tree::new("fresh");
        web.file("src/index.ts", 10);
        web.file("package.json", 5);
        web.file("tsconfig.json", 5);
        web.file("dist/src/index.js", 20);
        web.file("dist/src/client.js", 21);
        assert_eq!(dist_state(&web.0).unwrap(), DistState::Fresh);
        assert!(steps(&DistState::Fresh, &web.0).is_empty());
        // Fresh needs no npm at all, even when npm is missing.
        ensure_built(&web.0, "sealroom-test-no-such-npm").unwrap();
    }

    #[test]
    fn without_npm_the_error_says_how_to_install_it() {
        let web = Tree::new("no-npm");
        web.file("src/index.ts", 10);
        let err = ensure_built(&web.0, "sealroom-test-no-such-npm")
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get install nodejs npm"), "{err}");
        assert!(err.contains("npm ci && npm run build"), "{err}");
    }
}
