// The browse page: hash routes over the similarity service's JSON endpoints.
//
//   #/                 start
//   #/search?q=toy     movies by title            GET /movies?query=&limit=
//   #/movie/<id>       a movie's similar movies   GET /movies/<id>/similar
//   #/user/<id>        profile + recommendations  GET /users/<id>, /users/<id>/recommendations,
//                      and similar users          GET /users/<id>/similar
//   #/for-you          the visitor's own list     POST /recommendations with their ratings
//
// The visitor rates movies (1-5 stars on every movie view, search result and For-you result);
// the ratings stay in this browser (localStorage, one key: RATINGS_KEY, JSON {movie_id: rating})
// until "Clear my ratings". Rating a movie while "For you" is open asks for the list again.
//
// Every piece of text from the service goes into the page as a text node (textContent), never
// as HTML: titles hold quotes, ampersands and anything else a data file brings.
// Each view shows its server time: the sum of the Server-Timing headers of its requests.
"use strict";

const SEARCH_LIMIT = 25;
const K = 10;
const BECAUSE = 3;           // rated movies named under each For-you result
const RATINGS_KEY = "movielens-ratings";
const STARS = [1, 2, 3, 4, 5];

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

  get(path, params) { return this.send("GET", path, params); }

  post(path, body) { return this.send("POST", path, null, body); }

  async send(method, path, params, payload) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params || {})) url.searchParams.set(name, value);
    const init = { method, headers: { Accept: "application/json" } };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const response = await fetch(url, init);
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

// --- the visitor's ratings (localStorage) ----------------------------------------------------
let memoryRatings = {}; // where localStorage is unavailable (a locked-down browser): this page only

function validRatings(parsed) {
  const out = {};
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return out;
  for (const [id, rating] of Object.entries(parsed)) {
    if (/^\d+$/.test(id) && STARS.includes(rating)) out[id] = rating;
  }
  return out;
}

function loadRatings() {
  try {
    const text = window.localStorage.getItem(RATINGS_KEY);
    return text ? validRatings(JSON.parse(text)) : {};
  } catch (_) {
    return { ...memoryRatings };
  }
}

function saveRatings(ratings) {
  memoryRatings = { ...ratings };
  try {
    if (Object.keys(ratings).length) window.localStorage.setItem(RATINGS_KEY, JSON.stringify(ratings));
    else window.localStorage.removeItem(RATINGS_KEY);
  } catch (_) { /* kept in memoryRatings */ }
}

// Clicking a movie's current rating again removes it.
function rate(movieId, rating) {
  const ratings = loadRatings();
  if (ratings[movieId] === rating) delete ratings[movieId];
  else ratings[movieId] = rating;
  saveRatings(ratings);
  return ratings[movieId] || 0;
}

function ratingsChanged() {
  showRatedCount();
  const view = document.getElementById("view");
  for (const group of view.querySelectorAll(".rate[data-rate-for]")) markStars(group);
  if (view.dataset.view === "for-you") render({ keepScroll: true });
}

function showRatedCount() {
  const n = Object.keys(loadRatings()).length;
  document.getElementById("rated-count").textContent = n ? `(${n} rated)` : "";
}

// Five real buttons; the current rating's stars are filled and its button aria-pressed.
function ratingButtons(m) {
  const name = label(m);
  const group = el("span", { class: "rate", role: "group", "aria-label": `Your rating of ${name}`,
                             "data-rate-for": m.movie_id, "data-testid": "rate" },
    STARS.map((n) => el("button", { type: "button", class: "star", "data-rate": n,
                                    "aria-label": `Rate ${name} ${n} of 5` }, "\u2605")));
  markStars(group);
  return group;
}

function markStars(group) {
  const rating = loadRatings()[group.dataset.rateFor] || 0;
  group.dataset.rating = rating;
  for (const button of group.querySelectorAll("button[data-rate]")) {
    const n = Number(button.dataset.rate);
    button.classList.toggle("on", n <= rating);
    button.setAttribute("aria-pressed", String(n === rating));
    button.title = n === rating ? `Your rating: ${n} of 5 (click again to remove it)` : `Rate ${n} of 5`;
  }
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
             "their top-rated training movies and what the model recommends to them."),
          el("p", { class: "hint" }, "Rate a few movies yourself (the stars on every movie and search result), then open ",
             el("a", { href: "#/for-you" }, "For you"), ": recommendations for your ratings, each with the movies " +
             "you rated behind it. Your ratings stay in this browser.")];
}

async function searchView(api, query) {
  document.getElementById("search-input").value = query;
  const body = await api.get("/movies", { query, limit: SEARCH_LIMIT });
  const rows = body.results.map((m, i) => el("tr", {},
    el("td", { class: "num" }, i + 1), movieCell(m), el("td", { class: "num" }, m.rated_by),
    el("td", {}, ratingButtons(m))));
  return [el("h1", {}, `Movies matching “${query}”`),
          el("p", { class: "sub" }, `${body.total} found` + (body.total > rows.length ? `, best ${rows.length} shown` : "")),
          table("search-results", ["#", "Title", "Rated by", "Your rating"], rows)];
}

async function movieView(api, id) {
  const body = await api.get(`/movies/${encodeURIComponent(id)}/similar`, { k: K });
  const m = body.query;
  const scoreName = body.metric === "retrieval_score" ? "Retrieval score" : "Cosine";
  const rows = body.results.map((hit, i) => el("tr", {},
    el("td", { class: "num" }, i + 1), movieCell(hit), el("td", { class: "num" }, num(hit.score, 3))));
  return [el("h1", { "data-testid": "movie-title" }, label(m)),
          el("p", { class: "sub" }, genres(m), ` · movie ${m.movie_id}`),
          el("p", { class: "your-rating" }, "Your rating: ", ratingButtons(m)),
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
    el("td", { class: "num" }, i + 1), explainedCell(r, "they"),
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

// "because you rated A, B, C": the rated movies that add most to a result's retrieval score
// (plain text, not links: a result's only movie link is its own title).
function explainedCell(r, who) {
  const cell = movieCell(r);
  const because = Array.isArray(r.because) ? r.because : [];
  if (because.length) {
    cell.append(el("div", { class: "because", "data-testid": "because" },
      `because ${who} rated `, because.map((b, i) => [i ? ", " : "", el("span", { class: "because-title", "data-because-id": b.movie_id }, label(b))])));
  }
  return cell;
}

function clearRatingsButton(count) {
  return el("button", { type: "button", id: "clear-ratings", class: "secondary", "data-testid": "clear-ratings",
                        disabled: count ? null : "" }, "Clear my ratings");
}

async function forYouView(api) {
  const ratings = loadRatings();
  const history = Object.entries(ratings).map(([id, rating]) => ({ movie_id: Number(id), rating }));
  const heading = el("h1", { "data-testid": "for-you-title" }, "For you");
  if (!history.length) {
    return [heading,
            el("p", { class: "hint", "data-testid": "no-ratings" },
               "You have not rated any movies yet. Search a title or open a movie, give it 1 to 5 stars, " +
               "and rate a few more: recommendations for you appear here, each with the movies you rated behind it."),
            el("p", {}, clearRatingsButton(0))];
  }
  let body;
  try {
    body = await api.post("/recommendations", { ratings: history, k: K, because: BECAUSE });
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    return [heading, el("p", { class: "error", "data-testid": "error" }, error.message),
            el("p", {}, clearRatingsButton(history.length))];
  }
  const twoStage = body.stages.endsWith("+rerank");
  const rows = body.results.map((r, i) => el("tr", {},
    el("td", { class: "num" }, i + 1), explainedCell(r, "you"),
    el("td", {}, ratingButtons(r)),
    el("td", { class: "num" }, num(r.predicted_rating, 2)),
    el("td", { class: "num" }, num(r.score, 3))));
  const how = twoStage
    ? `Two stages: the top ${body.candidates} by retrieval score, re-ranked by retrieval score + ${body.rerank_weight} × predicted rating.`
    : `Ranked by retrieval score.`;
  return [heading,
          el("p", { class: "sub" }, `From your ${history.length} rating${history.length > 1 ? "s" : ""} ` +
             "(kept in this browser only); movies you rated are left out. ", clearRatingsButton(history.length)),
          el("p", { class: "note" }, how, body.stages_note ? ` ${body.stages_note}` : ""),
          table("for-you", ["#", "Title", "Your rating", "Predicted rating", "Score"], rows)];
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
  if (parts[0] === "for-you") return ["for-you", (api) => forYouView(api)];
  return ["home", async () => homeView()];
}

let renderCount = 0;

async function render(options) {
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
  document.getElementById("for-you-link").classList.toggle("current", name === "for-you");
  if (!(options && options.keepScroll)) window.scrollTo(0, 0);
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
  // every rating button and the clear button of any view, now or later rendered
  document.getElementById("view").addEventListener("click", (event) => {
    const star = event.target.closest("button[data-rate]");
    if (star) {
      rate(star.closest("[data-rate-for]").dataset.rateFor, Number(star.dataset.rate));
      ratingsChanged();
    } else if (event.target.closest("#clear-ratings")) {
      saveRatings({});
      ratingsChanged();
    }
  });
  window.addEventListener("storage", (event) => { if (event.key === RATINGS_KEY || event.key === null) ratingsChanged(); });
  window.addEventListener("hashchange", () => render());
  showRatedCount();
  showVersions();
  render();
});
