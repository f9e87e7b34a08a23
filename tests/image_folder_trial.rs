//! A trial on a folder of photos, with the photo defaults (resize and centre crop) and random resized crops,
//! then `predict` on one of the photos from the checkpoint it saved: the preprocessing travels in model.json.

mod common;

use common::Sandbox;
use serde_json::Value;

fn photo_folder(sb: &Sandbox) -> std::path::PathBuf {
    let root = sb.path().join("photos");
    for (class, tint) in [("cat", [200u8, 60, 30]), ("dog", [30, 60, 200])] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for (i, (w, h)) in [(50u32, 30u32), (30, 45), (40, 40), (64, 20)].into_iter().enumerate() {
            let photo = image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb(std::array::from_fn(|c| tint[c].wrapping_add(((x * 3 + y * 5) % 40) as u8)))
            });
            photo.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    root
}

#[test]
fn a_photo_trial_saves_its_preprocessing_and_predict_uses_it() {
    let sb = Sandbox::new();
    let photos = photo_folder(&sb);
    let dataset = photos.to_str().unwrap();
    let out = sb
        .cmd(&[
            "trial",
            "--dataset",
            dataset,
            "--image-size",
            "16",
            "--channels",
            "3",
            "--epochs",
            "2",
            "--val-fraction",
            "0.25",
            "--random-resized-crop",
            "--hflip",
            "--out",
            "t0",
            "--no-wait",
        ])
        .env("NIGHTSHIFT_PARAMS", r#"{"batch_size": 4, "learning_rate": 0.01}"#)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model: Value = serde_json::from_str(&std::fs::read_to_string(sb.path().join("t0/model.json")).unwrap()).unwrap();
    assert_eq!(model["resize"]["mode"], "center_crop", "{model}");
    assert_eq!(model["image_size"], serde_json::json!([16, 16]));

    let image = photos.join("dog/0.png");
    let top = sb.ok(&["predict", "--weights", "t0", "--image", image.to_str().unwrap(), "--top", "2", "-f", "json"]);
    let top: Value = serde_json::from_str(&top).unwrap();
    let classes: Vec<&str> = top["top"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(classes.len(), 2, "{top}");
    assert!(classes.contains(&"cat") && classes.contains(&"dog"), "{top}");

    // A file that is not an image is reported before the weights are loaded.
    let not_an_image = sb.path().join("notes.png");
    std::fs::write(&not_an_image, "hello").unwrap();
    let err = sb.fails(&["predict", "--weights", "t0", "--image", not_an_image.to_str().unwrap()]);
    assert!(err.contains("notes.png") && err.contains("PNG signature") && !err.contains("loaded"), "{err}");

    let err = sb.fails(&["trial", "--dataset", dataset, "--resize", "crop", "--epochs", "1", "--no-wait"]);
    assert!(err.contains("--resize") && err.contains("squash, center_crop"), "{err}");
}

#[test]
fn a_tournament_on_an_image_folder_says_its_replicates_have_no_test_split() {
    let sb = Sandbox::new();
    photo_folder(&sb);
    let space = "optimizer: {type: categorical, choices: [adamw, sgd]}";
    sb.file("t.yaml", &photo_spec(8, space, "compare: {param: optimizer, budget_per_arm: 2, seeds: 2}\n"));
    let out = sb.ok(&["check", "t.yaml"]);
    assert!(out.contains("note: the data has no test split") && out.contains("leans optimistic"), "{out}");
    // What the folder holds, and what it leaves out (a user's GIFs would shrink it unnoticed).
    std::fs::write(sb.path().join("photos/cat/x.gif"), b"GIF89a").unwrap();
    let out = sb.ok(&["check", "t.yaml"]);
    assert!(
        out.contains("an image folder, 2 classes, 8 images; left out 1 file(s) without an image extension (.gif 1;"),
        "{out}"
    );
}

#[test]
fn check_names_an_unreadable_photo_once() {
    let sb = Sandbox::new();
    let photos = photo_folder(&sb);
    std::os::unix::fs::symlink(sb.path().join("gone.png"), photos.join("cat/dangling.png")).unwrap();
    sb.file("s.yaml", &photo_spec(2, "learning_rate: {type: float, low: 0.001, high: 0.1, log: true}", ""));
    let err = sb.fails(&["check", "s.yaml"]);
    assert!(err.contains("dangling.png"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// A spec of `trials` one-epoch trials on `photo_folder`'s photos, with the one parameter `param`.
fn photo_spec(trials: u64, param: &str, extra: &str) -> String {
    format!(
        "study: photos\n\
         objective: {{metric: val_accuracy, direction: maximize}}\n\
         budget: {{trials: {trials}}}\n\
         devices: {{cpu: 1}}\n\
         trial: {{dataset: photos, epochs: 1, image_size: 16}}\n\
         params:\n  {param}\n{extra}"
    )
}
