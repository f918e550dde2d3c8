"""`scratchformer demo`: the Gradio app's outputs against the tasks' `predict`, the attention explorer's weights
against the model's own `output_attentions`, bad input, the exported app.py run from the loopback Hub without
the package, and the app in a real browser (the system's headless Chromium, driven by Selenium)."""

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

gr = pytest.importorskip("gradio")

from scratchformer.training import cli, demo  # noqa: E402
from scratchformer.training.export import (  # noqa: E402
    DEMO_FILES,
    CardInfo,
    demo_requirements,
    export_for_hub,
    render_model_card,
)
from scratchformer.training.predictions import generate  # noqa: E402
from scratchformer.training.tasks import TASKS, get_task, task_of_architecture  # noqa: E402

pytest.register_assert_rewrite("hub_fixtures")
from hub_fixtures import HEADS, TEXTS, build_model, build_tokenizer, card_info, client_env, free_port  # noqa: E402
from model_tester import ModelTester  # noqa: E402

from scratchformer import ScratchformerForMaskedLM  # noqa: E402

pytest_plugins = ["hub_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
TEXT = TEXTS[0]  # "the dog did not cross the street"
MAX_NEW_TOKENS = 8
GREEDY = dict(num_beams=1, do_sample=False, max_new_tokens=MAX_NEW_TOKENS)
SAMPLING = dict(num_beams=1, max_new_tokens=MAX_NEW_TOKENS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """head -> (model, tokenizer, folder, task): the seq2seq model exported for the Hub, the classification
    heads saved as a training run leaves them (with card_info.json and training_args.json naming the task)."""
    root = tmp_path_factory.mktemp("demo")
    result = {}
    for head in HEADS:
        model, tokenizer, folder = build_model(head), build_tokenizer(), root / head
        task = task_of_architecture(type(model).__name__)
        if model.can_generate():
            model.generation_config.max_new_tokens = MAX_NEW_TOKENS
            export_for_hub(model, folder, tokenizer, dataclasses.replace(card_info(head, None), task=task.name))
        else:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            (folder / "card_info.json").write_text(card_info(head, None).to_json())
            (folder / "training_args.json").write_text(json.dumps({"DataArguments": {"task": task.name}}))
        result[head] = SimpleNamespace(model=model, tokenizer=tokenizer, folder=folder, task=task)
    return result


@pytest.fixture(scope="module")
def apps(exported):
    return {head: demo.build_app(e.folder) for head, e in exported.items()}


def run(
    app, text=TEXT, num_beams=1, do_sample=False, max_new_tokens=MAX_NEW_TOKENS, kind="encoder", layer="1", head="1"
):
    """The app's Run handler, as the page calls it: {component: value}."""
    d = app.scratchformer
    return d.run(d.models.first.source, text, num_beams, do_sample, 1.0, 1.0, max_new_tokens, kind, layer, head)


def read_payload(page: str) -> dict:
    """The weights an explorer page embeds (its data-payload attribute)."""
    return json.loads(html.unescape(re.search(r'data-payload="([^"]*)"', page).group(1)))


@torch.no_grad()
def model_attentions(model, tokenizer, text, decoder_input_ids=None) -> dict:
    """kind -> per layer (heads, queries, keys), straight from model(..., output_attentions=True)."""
    inputs = tokenizer(text, return_tensors="pt")
    if decoder_input_ids is None:
        return {"encoder": [w[0] for w in model(**inputs, output_attentions=True).attentions]}
    out = model(**inputs, decoder_input_ids=decoder_input_ids, output_attentions=True)
    layers = {"encoder": out.encoder_attentions, "decoder": out.decoder_attentions, "cross": out.cross_attentions}
    return {kind: [w[0] for w in weights] for kind, weights in layers.items()}


# ------------------------------------------------------------------------------------------------ outputs
def test_each_head_shows_what_its_task_predicts(exported, apps):
    for head, e in exported.items():
        d = apps[head].scratchformer
        assert d.models.first.task == e.task.name  # from card_info.json (exported) or training_args.json (saved)
        result = run(apps[head])
        assert result[d.message] == ""
        value = result[d.outputs[d.models.first.head.output]]
        (expected,) = e.task.predict(e.model, e.tokenizer, [TEXT])
        if head == "seq2seq":
            assert value == expected and value.strip()
        elif head == "seq_cls":  # every label's probability; the task's label is the most probable
            assert set(value) == set(e.model.config.id2label.values())
            label, probability = max(value.items(), key=lambda item: item[1])
            assert label == expected[0] and probability == pytest.approx(expected[1])
            assert sum(value.values()) == pytest.approx(1.0)
        else:  # one (word, tag) per word, spaces between them
            assert [pair for pair in value if pair[1] is not None] == expected
            assert "".join(word for word, _ in value) == TEXT


def test_every_task_head_is_served():
    assert {task.model_class_name for task in TASKS.values()} <= set(demo.HEADS)


def test_a_masked_lm_fills_its_masks(tmp_path):
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"mask_token": "<mask>"})
    torch.manual_seed(1)
    model = ScratchformerForMaskedLM(ModelTester().get_config(vocab_size=len(tokenizer))).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    app = demo.build_app(tmp_path)
    d, text = app.scratchformer, "the dog <mask> not cross the <mask>"
    result = run(app, text=text, kind="cross")
    assert result[d.outputs["text"]] == get_task("masked-lm").predict(model, tokenizer, [text])[0]
    assert "<mask>" not in result[d.outputs["text"]]
    data = read_payload(result[d.explorer])
    assert data["kind"] == "encoder" and data["keys"][2] == "<mask>"
    reference = model_attentions(model, tokenizer, text)["encoder"][0][0]
    torch.testing.assert_close(torch.tensor(data["weights"]), reference, atol=1e-6, rtol=0)


def test_decoding_controls_reach_generate(exported, apps):
    e, app = exported["seq2seq"], apps["seq2seq"]
    d = app.scratchformer
    beams = run(app, num_beams=4, max_new_tokens=5)
    assert beams[d.outputs["text"]] == generate(e.model, e.tokenizer, [TEXT], num_beams=4, max_new_tokens=5)[0][0]
    assert len(beams[d.maps].target_tokens) <= 1 + 5  # the explorer reads the output shown
    torch.manual_seed(3)
    sampled = run(app, do_sample=True)[d.outputs["text"]]
    torch.manual_seed(3)
    expected = generate(e.model, e.tokenizer, [TEXT], do_sample=True, temperature=1.0, top_p=1.0, **SAMPLING)[0][0]
    assert sampled == expected != beams[d.outputs["text"]]


# ---------------------------------------------------------------------------------------- the explorer
def test_explorer_weights_are_the_models_own(exported, apps):
    """Every kind, layer and head the explorer shows equals model(..., output_attentions=True) on the text and
    the output the app generated; the matrix cells and the painted keys say the same numbers."""
    e, app = exported["seq2seq"], apps["seq2seq"]
    d = app.scratchformer
    result = run(app, kind="cross", layer="2", head="3")
    page = result[d.explorer]
    data = read_payload(page)
    assert (data["kind"], data["layer"], data["head"]) == ("cross", 2, 3)
    inputs = e.tokenizer(TEXT, return_tensors="pt")
    generated = e.model.generate(**inputs, **GREEDY)
    reference = model_attentions(e.model, e.tokenizer, TEXT, generated)
    assert data["queries"] == e.tokenizer.convert_ids_to_tokens(generated[0].tolist())
    assert data["keys"] == TEXT.split() + ["</s>"]
    maps = result[d.maps]
    config = e.model.config
    for kind, layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers), ("cross", 2)):
        for layer in range(1, layers + 1):
            for head in range(1, config.encoder_attention_heads + 1):
                shown = read_payload(demo.explorer_html(maps, kind, layer, head))
                expected = reference[kind][layer - 1]
                torch.testing.assert_close(torch.tensor(shown["weights"]), expected[head - 1], atol=1e-6, rtol=0)
                torch.testing.assert_close(torch.tensor(shown["overview"]), expected, atol=1e-6, rtol=0)
    cells = [float(w) for w in re.findall(r'<td style="--w:[0-9.]+" data-weight="([0-9.]+)"', page)]
    torch.testing.assert_close(torch.tensor(cells), reference["cross"][1][2].flatten(), atol=1e-4, rtol=0)
    keys = [float(w) for w in re.findall(r'class="sf-token sf-key" data-j="\d+" data-weight="([0-9.]+)"', page)]
    torch.testing.assert_close(torch.tensor(keys), reference["cross"][1][2][0], atol=1e-4, rtol=0)  # query 0
    assert page.count('class="sf-thumb') == config.decoder_attention_heads


def test_switching_the_head_only_redraws(apps):
    d = apps["seq2seq"].scratchformer
    maps = run(apps["seq2seq"])[d.maps]
    first = d.explore(maps, "decoder", "1", "1")
    other = d.explore(maps, "decoder", "2", "4")
    assert read_payload(first[d.explorer])["weights"] != read_payload(other[d.explorer])["weights"]
    assert other[d.layer]["value"] == "2" and other[d.head]["value"] == "4"
    clamped = d.explore(maps, "encoder", "9", "9")  # out of range: the last layer and head
    assert (clamped[d.layer]["value"], clamped[d.head]["value"]) == ("2", "4")
    assert d.explore(None, "encoder", "1", "1") == {d.explorer: demo.EMPTY_EXPLORER}


@pytest.mark.parametrize("head", ["seq_cls", "token_cls"])
def test_classification_explorer_is_the_encoder(exported, apps, head):
    e, d = exported[head], apps[head].scratchformer
    result = run(apps[head], kind="cross")  # a kind this head lacks: encoder instead
    assert result[d.kind]["choices"] == [(demo.KINDS["encoder"], "encoder")]
    data = read_payload(result[d.explorer])
    assert data["kind"] == "encoder"
    reference = model_attentions(e.model, e.tokenizer, TEXT)
    torch.testing.assert_close(torch.tensor(data["weights"]), reference["encoder"][0][0], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------- bad input
def test_bad_input_gives_a_message_and_the_app_keeps_serving(exported, apps, tmp_path, monkeypatch):
    app = apps["seq2seq"]
    d = app.scratchformer
    assert run(app, text="   ") == {d.message: "**Type a text first.**"}
    limit = exported["seq2seq"].model.config.max_position_embeddings
    too_long = run(app, text=" ".join(["dog"] * limit))  # limit words + </s>
    assert too_long == {
        d.message: f"**The text has {limit + 1} tokens; this model reads at most {limit} (its "
        "max_position_embeddings). Shorten it.**"
    }
    monkeypatch.setattr(demo, "EXPLORER_TOKENS", 8)
    drawn = run(app, text=" ".join(["dog"] * 8))  # fits the model, not the explorer
    monkeypatch.undo()
    assert drawn[d.maps] is None and "The explorer draws texts of up to" in drawn[d.explorer]

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    for source, words in (
        (str(not_a_model), "is not a model folder: it has no config.json"),
        ("nobody/no-such-model", "Cannot load 'nobody/no-such-model'"),
        ("", "Name a model"),
    ):
        assert words in d.load_model(source)[d.message]
    vectors = tmp_path / "vectors"
    build_model("seq_cls", input_features_dim=3).save_pretrained(vectors)
    build_tokenizer().save_pretrained(vectors)
    assert "reads vectors (input_features_dim), not text" in d.load_model(str(vectors))[d.message]
    no_tokenizer = tmp_path / "no-tokenizer"
    exported["seq_cls"].model.save_pretrained(no_tokenizer)
    assert "has no tokenizer (tokenizer_config.json)" in d.load_model(str(no_tokenizer))[d.message]
    (not_a_model / "config.json").write_text("{not json")
    assert "Cannot load" in d.load_model(str(not_a_model))[d.message]

    def fails(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(d.models.first, "head", dataclasses.replace(d.models.first.head, predict=fails))
    assert run(app) == {
        d.message: "**Something went wrong: RuntimeError: out of memory** (the server log has the details)"
    }
    monkeypatch.undo()
    assert run(app)[d.message] == ""  # still serving


def test_the_model_box_switches_heads(exported, apps):
    d = apps["seq2seq"].scratchformer
    loaded = d.load_model(str(exported["seq_cls"].folder))
    assert loaded[d.message].startswith("Loaded") and loaded[d.source] == str(exported["seq_cls"].folder)
    assert loaded[d.outputs["labels"]]["visible"] and not loaded[d.outputs["text"]]["visible"]
    assert not loaded[d.decoding]["visible"] and loaded[d.text] == TEXT
    labels = d.run(loaded[d.source], TEXT, 1, False, 1.0, 1.0, 8, "cross", "1", "1")
    assert set(labels[d.outputs["labels"]]) == {"negative", "positive"}


def test_cli_serves_on_loopback_by_default(exported, monkeypatch):
    launched = []
    monkeypatch.setattr(demo, "launch", lambda app, host, port: launched.append((app.scratchformer, host, port)))
    assert cli.main(["demo", str(exported["token_cls"].folder), "--port", "7999"]) == 0
    ((served, host, port),) = launched
    assert (host, port) == ("127.0.0.1", 7999) and served.models.first.head.output == "tags"


def test_cli_refuses_a_folder_that_is_no_model(tmp_path):
    with pytest.raises(SystemExit, match="is not a model folder: it has no config.json"):
        cli.main(["demo", str(tmp_path)])
    folder = tmp_path / "base"
    build_model("seq2seq").model.save_pretrained(folder)  # the bare ScratchformerModel: no task head
    build_tokenizer().save_pretrained(folder)
    with pytest.raises(SystemExit, match="holds a ScratchformerModel; the demo serves"):
        cli.main(["demo", str(folder), "--port", "0"])


# -------------------------------------------------------------------------------------- the Hub export
def test_export_ships_the_demo_as_a_space(exported):
    folder = exported["seq2seq"].folder
    training = ROOT / "training"
    for shipped, module in DEMO_FILES.items():
        assert (folder / shipped).read_text() == (training / module).read_text()
    demo_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["demo"]
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert requirements[1:] == demo_requirements()
    assert [line.split("<")[0].split(">")[0] for line in requirements[1:]] == ["gradio", "torch", "transformers"]
    lowest_gradio = re.search(r">=([\d.]+)", demo_extra[0]).group(1)
    metadata = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    assert (metadata["sdk"], metadata["sdk_version"], metadata["app_file"]) == ("gradio", lowest_gradio, "app.py")
    card = render_model_card(exported["seq2seq"].model, CardInfo(repo_id="someone/tiny"), demo=True)
    assert "## Demo" in card and "(https://huggingface.co/spaces/someone/tiny)" in card
    assert "hf upload someone/tiny demo --repo-type space" in card and "python app.py" in card
    assert "## Demo" not in render_model_card(exported["seq2seq"].model, CardInfo())  # no app.py, no section


@pytest.fixture(scope="module")
def space_client(hub_port, tmp_path_factory):
    """A fresh process with only gradio, torch and transformers (demo_space_client.py), started before the repos
    are exported and served: it imports them meanwhile, then waits for a repo id on stdin."""
    work = tmp_path_factory.mktemp("space")
    env = client_env(f"http://127.0.0.1:{hub_port}", work / "home")
    log = open(work / "client.log", "wb")
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "demo_space_client.py"), str(work / "space.json")],
        env=env,
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    yield process, work
    if process.poll() is None:
        process.kill()
        process.wait()


def test_exported_repo_runs_as_a_space_without_the_package(space_client, hub_exports, hub_endpoint):
    """The fresh process downloads the repo from the loopback Hub, runs its app.py as a Space does (its own
    folder, remote code) and from the Hub id, and serves its page."""
    process, work = space_client
    e = hub_exports["seq2seq"]
    process.communicate(f"{e.repo_id}\n".encode(), timeout=300)
    assert process.returncode == 0, (work / "client.log").read_text()[-6000:]
    results = json.loads((work / "space.json").read_text())
    assert results["package_imported"] == []
    assert Path(results["app_file"]).parent == Path(results["folder"])
    assert results["page"] == {"status": 200, "has_title": True}
    inputs = e.tokenizer(TEXT, return_tensors="pt")
    generated = e.model.generate(**inputs, **GREEDY)
    expected = e.tokenizer.batch_decode(generated, skip_special_tokens=True)[0]
    cross = model_attentions(e.model, e.tokenizer, TEXT, generated)["cross"][1][2]  # layer 2, head 3
    for way in ("space", "hub_id"):
        shown = results[way]
        assert shown["model_module"].startswith("transformers_modules.") and shown["message"] == ""
        assert shown["output"] == expected and shown["html_has_payload"]
        torch.testing.assert_close(torch.tensor(shown["payload"]["weights"]), cross, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ the browser
def chromium() -> tuple[str, str] | None:
    browser = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def browser():
    """Headless Chromium from the system's packages; Selenium is given both paths, so its manager downloads
    nothing."""
    paths = chromium()
    if paths is None:
        pytest.skip("no system Chromium: install the Debian packages chromium and chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2200",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def served(apps):
    """The seq2seq app on a free loopback port."""
    app = apps["seq2seq"]
    port = free_port()
    demo.launch(app, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def replace_text(box, value: str):
    """Select all, then type: key events the page hears (Selenium's clear() fires none)."""
    from selenium.webdriver.common.keys import Keys

    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if value:
        box.send_keys(value)


def test_in_a_real_browser(exported, served, browser, tmp_path):
    """Type a text, read the output; switch kind, layer and head and read the weights drawn; hover a token;
    bad input shows a message and the page keeps working; a screenshot of it all."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    e = exported["seq2seq"]
    wait = WebDriverWait(browser, 30)
    browser.get(served)
    text = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#sf-text textarea"))

    def explorer():
        return browser.find_element(By.CSS_SELECTOR, "#sf-attention .sf-explorer")

    def shown(**attributes):
        """The explorer's payload once its attributes say `attributes` (the page redrew)."""
        wait.until(lambda b: all(explorer().get_attribute(f"data-{k}") == str(v) for k, v in attributes.items()))
        return json.loads(explorer().get_attribute("data-payload"))

    def click(radio, label):
        browser.find_element(By.XPATH, f"//*[@id='{radio}']//label[normalize-space(.)='{label}']").click()

    replace_text(text, TEXT)
    browser.find_element(By.ID, "sf-run").click()
    (expected,) = e.task.predict(e.model, e.tokenizer, [TEXT])
    output = browser.find_element(By.CSS_SELECTOR, "#sf-output textarea")
    wait.until(lambda b: output.get_attribute("value") == expected)

    generated = e.model.generate(**e.tokenizer(TEXT, return_tensors="pt"), **GREEDY)
    reference = model_attentions(e.model, e.tokenizer, TEXT, generated)
    encoder = shown(kind="encoder", layer=1, head=1)
    torch.testing.assert_close(torch.tensor(encoder["weights"]), reference["encoder"][0][0], atol=1e-6, rtol=0)
    click("sf-kind", demo.KINDS["cross"])
    shown(kind="cross")
    click("sf-layer", "2")
    shown(kind="cross", layer=2)
    click("sf-head", "3")
    cross = shown(kind="cross", layer=2, head=3)
    assert cross["weights"] != encoder["weights"]
    torch.testing.assert_close(torch.tensor(cross["weights"]), reference["cross"][1][2], atol=1e-6, rtol=0)
    assert cross["queries"] == e.tokenizer.convert_ids_to_tokens(generated[0].tolist())

    query = browser.find_elements(By.CSS_SELECTOR, "#sf-attention .sf-query")[2]
    ActionChains(browser).move_to_element(query).perform()
    wait.until(lambda b: explorer().get_attribute("data-query") == "2")
    keys = browser.find_elements(By.CSS_SELECTOR, "#sf-attention .sf-key")
    painted = [float(key.get_attribute("data-weight")) for key in keys]
    torch.testing.assert_close(torch.tensor(painted), reference["cross"][1][2][2], atol=1e-4, rtol=0)
    assert "sf-active" in query.get_attribute("class")
    assert (
        len(browser.find_elements(By.CSS_SELECTOR, "#sf-attention .sf-thumb")) == e.model.config.decoder_attention_heads
    )

    screenshot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(screenshot))
    if os.environ.get("SCRATCHFORMER_SCREENSHOT_DIR"):
        target = Path(os.environ["SCRATCHFORMER_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / "demo.png")

    message = browser.find_element(By.ID, "sf-message")
    replace_text(text, "")
    browser.find_element(By.ID, "sf-run").click()
    wait.until(lambda b: "Type a text first." in message.text)
    replace_text(browser.find_element(By.CSS_SELECTOR, "#sf-model textarea, #sf-model input"), str(tmp_path))
    browser.find_element(By.ID, "sf-load").click()
    wait.until(lambda b: "is not a model folder" in message.text)
    assert "Traceback" not in browser.page_source
    replace_text(text, "the cat sat on the mat")  # the server still serves the model it had
    browser.find_element(By.ID, "sf-run").click()
    (expected,) = e.task.predict(e.model, e.tokenizer, ["the cat sat on the mat"])
    wait.until(lambda b: output.get_attribute("value") == expected and message.text == "")
