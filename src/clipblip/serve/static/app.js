// The page talks to the same endpoints as any client: multipart forms in, JSON out.
const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("clipblip-key") || "";
keyInput.onchange = () => localStorage.setItem("clipblip-key", keyInput.value);
let picked = null; // the File chosen for caption / ask / classify

function headers() {
  return keyInput.value ? { "X-API-Key": keyInput.value } : {};
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

async function post(path, fields) {
  const form = new FormData();
  for (const [name, value] of fields) form.append(name, value);
  const r = await fetch(path, { method: "POST", body: form, headers: headers() });
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  showError("");
  return body;
}

// Index images need the API key header, so they are fetched and shown as blob URLs.
async function loadImage(img, url) {
  const r = await fetch(url, { headers: headers() });
  if (r.ok) img.src = URL.createObjectURL(await r.blob());
}

$("search-form").onsubmit = async (e) => {
  e.preventDefault();
  const out = $("results");
  try {
    const { hits } = await post("/search", [["text", $("query").value], ["k", "12"]]);
    out.replaceChildren();
    for (const hit of hits) {
      const fig = document.createElement("figure");
      fig.className = "hit";
      const img = document.createElement("img");
      img.alt = hit.caption || hit.path || `#${hit.id}`;
      const cap = document.createElement("figcaption");
      cap.textContent = `${hit.score.toFixed(3)} ${hit.caption || (hit.path || "").split("/").pop()}`;
      fig.append(img, cap);
      out.append(fig);
      if (hit.url) loadImage(img, hit.url);
    }
    if (!hits.length) out.textContent = "no results";
  } catch (err) { showError(err.message); }
};

async function pick(file) {
  if (!file) return;
  picked = file;
  $("picked").hidden = false;
  $("preview").src = URL.createObjectURL(file);
  $("caption").textContent = "…";
  $("answer").textContent = "";
  $("classes").replaceChildren();
  try {
    const { captions } = await post("/caption", [["image", file]]);
    $("caption").textContent = captions[0];
  } catch (err) { $("caption").textContent = ""; showError(err.message); }
}

const drop = $("drop");
$("file").onchange = () => pick($("file").files[0]);
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); pick(e.dataTransfer.files[0]); };

$("ask-form").onsubmit = async (e) => {
  e.preventDefault();
  try {
    const { answer } = await post("/ask", [["image", picked], ["question", $("question").value]]);
    $("answer").textContent = answer;
  } catch (err) { showError(err.message); }
};

$("classify-form").onsubmit = async (e) => {
  e.preventDefault();
  const labels = $("labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    const { results } = await post("/classify", [["image", picked], ...labels.map((l) => ["label", l])]);
    $("classes").replaceChildren(...results[0].map(({ label, prob }) => {
      const li = document.createElement("li");
      li.textContent = `${label} ${(100 * prob).toFixed(1)}%`;
      return li;
    }));
  } catch (err) { showError(err.message); }
};

// /info needs the key when the server has one: a 401 is how the page learns that it must ask for it.
async function showInfo() {
  try {
    const r = await fetch("/info", { headers: headers() });
    if (r.status === 401) {
      $("key-box").hidden = false;
      $("health").textContent = "this server needs its API key";
      return;
    }
    const h = await r.json();
    $("health").textContent = `${h.models.clip} · ${h.models.blip} · ` +
      (h.index === null ? "no index" : `${h.index} images indexed`);
  } catch (err) { showError("the server does not answer /info"); }
}
keyInput.addEventListener("change", showInfo);
showInfo();
