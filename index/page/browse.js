// The browse page: hash routes over the similarity service's JSON endpoints.
//
//   #/                 start
//   #/search?q=toy     movies by title            GET /movies?query=&limit=
//   #/movie/<id>       a movie's similar movies   GET /movies/<id>/similar
//   #/user/<id>        profile + recommendations  GET /users/<id>, /users/<id>/recommendations,
//                      and similar users          GET /users/<id>/similar
//
// Every piece of text from the service goes into the page as a text node (textContent), never
// as HTML: titles hold quotes, ampersands and anything else a data file brings.
// Each view shows its server time: the sum of the Server-Timing headers of its requests.
"use strict";

const SEARCH_LIMIT = 25;
const K = 10;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const movieHref = (id) => "#/movie/" + encodeURIComponent(id);
const userHref = (id) => "#/user/" + encodeURIComponent(id);
const label = (m) => (m.year ? `${m.title} (${m.year})` : m.title);
const genres = (m) => el("span", { class: "genres" }, (m.genres || []).join(", ") || "(no genres)");
const num = (x, digits) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// One view's requests: their server times add up in `serverMs`.
class ViewRequests {
  constructor() { this.serverMs = 0; this.requests = 0; }

  async get(path, params) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params || {})) url.searchParams.set(name, value);
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    this.requests += 1;
    const timing = /app;dur=([0-9.]+)/.exec(response.headers.get("Server-Timing") || "");
    if (timing) this.serverMs += parseFloat(timing[1]);
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) throw new ApiError(response.status, describeError(response.status, body));
    return body;
  }
}

function describeError(status, body) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  if (typeof detail === "string") return detail;
  return `HTTP ${status}`;
}

function table(testid, headings, rows) {
  if (!rows.length) return el("p", { class: "note", "data-testid": testid }, "(none)");
  return el("table", { "data-testid": testid },
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function movieCell(m) {
  return el("td", {}, el("a", { href: movieHref(m.movie_id), "data-movie-id": m.movie_id }, label(m)), " ", genres(m));
}

// --- views ----------------------------------------------------------------------------------
function homeView() {
  return [el("h1", {}, "Browse movies and recommendations"),
          el("p", { class: "hint" }, "Search a title above, or open a user by id to see their profile, " +
             "their top-rated training movies and what the model recommends to them.")];
}

async function searchView(api, query) {
  document.getElementById("search-input").value = query;
  const body = await api.get("/movies", { query, limit: SEARCH_LIMIT });
  const rows = body.results.map((m, i) => el("tr", {},
    el("td", { class: "num" }, i + 1), movieCell(m), el("td", { class: "num" }, m.rated_by)));
  return [el("h1", {}, `Movies matching “${query}”`),
          el("p", { class: "sub" }, `${body.total} found` + (body.total > rows.length ? `, best ${rows.length} shown` : "")),
          table("search-results", ["#", "Title", "Rated by"], rows)];
}

async function movieView(api, id) {
  const body = await api.get(`/movies/${encodeURIComponent(id)}/similar`, { k: K });
  const m = body.query;
  const scoreName = body.metric === "retrieval_score" ? "Retrieval score" : "Cosine";
  const rows = body.results.map((hit, i) => el("tr", {},
    el("td", { class: "num" }, i + 1), movieCell(hit), el("td", { class: "num" }, num(hit.score, 3))));
  return [el("h1", { "data-testid": "movie-title" }, label(m)),
          el("p", { class: "sub" }, genres(m), ` · movie ${m.movie_id}`),
          el("h2", {}, "Similar movies"),
          el("p", { class: "note" }, body.metric === "retrieval_score"
            ? "Ranked by the retrieval score of a history holding just this movie (\u201cwatched this, will watch\u201d)."
            : "Ranked by the cosine of the movie tower's embeddings."),
          table("similar-movies", ["#", "Title", scoreName], rows)];
}

async function userView(api, id) {
  const path = `/users/${encodeURIComponent(id)}`;
  const [profile, recs, similar] = await Promise.all([
    api.get(path, { top: K }), api.get(`${path}/recommendations`, { k: K }), api.get(`${path}/similar`, { k: 5 })]);
  const u = profile.user;
  // Data sets without demographics (the ml-latest format) carry "" for gender and zip.
  const facts = [["Gender", u.gender || "unknown"], ["Age", u.age_group], ["Occupation", u.occupation_name],
                 ["Zip", u.zip || "unknown"],
                 ["Rated movies", `${profile.seen_count}` + (profile.top_rated_from ? ` (${profile.rated_count} in the ${profile.top_rated_from})` : "")]];
  const topRows = profile.top_rated.map((r) => el("tr", {}, movieCell(r), el("td", { class: "num" }, num(r.rating, 1))));
  const twoStage = recs.stages.endsWith("+rerank");
  const recRows = recs.results.map((r, i) => el("tr", {},
    el("td", { class: "num" }, i + 1), movieCell(r),
    el("td", { class: "num" }, num(r.retrieval_score, 3)),
    el("td", { class: "num" }, num(r.predicted_rating, 2)),
    el("td", { class: "num" }, num(r.score, 3))));
  const similarRows = similar.results.map((s) => el("tr", {},
    el("td", {}, el("a", { href: userHref(s.user_id), "data-user-id": s.user_id }, `User ${s.user_id}`)),
    el("td", {}, `${s.gender || "?"}, ${s.age_group}, ${s.occupation_name}`),
    el("td", { class: "num" }, num(s.score, 3))));
  const how = twoStage
    ? `Two stages: the top ${recs.candidates} by retrieval score, re-ranked by retrieval score + ${recs.rerank_weight} × predicted rating; rated movies left out.`
    : `Ranked by ${recs.metric}; rated movies left out.`;
  return [el("h1", { "data-testid": "user-title" }, `User ${u.user_id}`),
          el("dl", { class: "profile", "data-testid": "profile" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
          el("div", { class: "columns" },
            el("section", {},
              el("h2", {}, "Top-rated training movies"),
              profile.top_rated_from ? null : el("p", { class: "note" }, "This index version has no ratings (an older catalogue)."),
              table("top-rated", ["Title", "Rating"], topRows),
              el("h2", {}, "Similar users"),
              table("similar-users", ["User", "Who", "Cosine"], similarRows)),
            el("section", {},
              el("h2", {}, "Recommended"),
              el("p", { class: "note" }, how),
              table("recommendations", ["#", "Title", "Retrieval", "Predicted rating", "Score"], recRows)))];
}

// --- routing --------------------------------------------------------------------------------
function route() {
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, queryString] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(queryString || "");
  if (parts[0] === "search" && params.get("q")) return ["search", (api) => searchView(api, params.get("q"))];
  if (parts[0] === "movie" && /^-?\d+$/.test(parts[1] || "")) return ["movie", (api) => movieView(api, parts[1])];
  if (parts[0] === "user" && /^-?\d+$/.test(parts[1] || "")) return ["user", (api) => userView(api, parts[1])];
  return ["home", async () => homeView()];
}

let renderCount = 0;

async function render() {
  const view = document.getElementById("view");
  const [name, build] = route();
  const mine = ++renderCount;
  const api = new ViewRequests();
  view.dataset.state = "loading";
  let content;
  try {
    content = await build(api);
  } catch (error) {
    const message = error instanceof ApiError ? error.message : `could not reach the service (${error.message})`;
    content = [el("p", { class: "error", "data-testid": "error" }, message)];
  }
  if (mine !== renderCount) return; // a newer route rendered meanwhile
  view.replaceChildren(...content);
  view.dataset.view = name;
  view.dataset.serverMs = api.serverMs.toFixed(3);
  view.dataset.state = "ready";
  document.getElementById("timing").textContent =
    api.requests ? `server time of this view: ${api.serverMs.toFixed(1)} ms (${api.requests} request${api.requests > 1 ? "s" : ""})` : "";
  window.scrollTo(0, 0);
}

async function showVersions() {
  const target = document.getElementById("versions");
  try {
    const v = await new ViewRequests().get("/version");
    target.replaceChildren(`model version ${v.model_version} · index version ${v.index_version} · ` +
      `${v.counts ? `${v.counts.movies} movies, ${v.counts.users} users` : ""} · ${v.index_type || ""}`);
    target.dataset.modelVersion = v.model_version;
    target.dataset.indexVersion = v.index_version;
  } catch (error) {
    target.replaceChildren(`no index loaded (${error.message})`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = document.getElementById("search-input").value.trim();
    if (query) window.location.hash = "#/search?q=" + encodeURIComponent(query);
  });
  document.getElementById("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = document.getElementById("user-input").value.trim();
    if (id) window.location.hash = userHref(id);
  });
  window.addEventListener("hashchange", render);
  showVersions();
  render();
});
