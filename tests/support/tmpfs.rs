//! A small tmpfs for disk-full tests (as root, as CI runs them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Unmounts the tmpfs whatever happens to the test.
pub struct Mounted(PathBuf);

impl Mounted {
    pub fn tmpfs(at: &Path, size: &str) -> Mounted {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and must run as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mounted(at.to_path_buf())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount the tmpfs larger");
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
