// The task page: rank answers by tapping, buttons, keyboard or drag-and-drop, or choose a value for each answer
// (thumbs), then submit to the JSON API. The task type's fragment (templates/tasks/) draws the controls; the
// section's data-interaction says which of the two this page is, data-answer the field and URL to submit.
//
// Ranking: the list order is the ranking, best first, and the placed answers are always the top of the list.
// Tapping (clicking) an unplaced answer, or pressing its number, gives it the next place; tapping a placed
// answer takes it out again (the ones below it move up). The arrow buttons move an answer up or down among the
// placed ones (up on an unplaced answer places it, down on the last placed one takes it out). Dragging a card
// places that card only. "=" then a number places an answer level with the previous one (only when ties are
// allowed); Backspace starts over; Enter submits once every answer is placed (the last one places itself).
// Choosing (thumbs): press a number, then the key an input names in its data-key ("u" or "d" for thumbs); the
// value of each answer's checked `.choice` input is sent. The time the page was visible is sent as seconds_spent, and one
// idempotency key per page load makes a retried submission count once.
(function () {
  "use strict";
  const task = document.getElementById("task");
  if (!task) return;
  const list = document.getElementById("completions");
  const submitButton = document.getElementById("submit");
  const resetButton = document.getElementById("reset");
  const status = document.getElementById("status");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const root = document.body.dataset.root || "";  // the prefix behind a reverse proxy (serve --root-path)
  const assignment = task.dataset.assignment;
  const isRanking = task.dataset.interaction === "order";
  const answerField = task.dataset.answer;
  const allowTies = task.dataset.allowTies === "true";
  const cards = Array.from(list.querySelectorAll(".completion"));
  const initialOrder = cards.slice();
  const progress = document.getElementById("progress");
  const leaseNote = document.getElementById("lease");
  const key = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

  let placed = 0; // ranking: how many cards (from the top) are placed
  let tieNext = false; // ranking: the next digit places level with the previous card
  let selected = null; // choosing: the card a digit selected
  let busy = false;
  let lost = false; // the lease ran out and the task went to someone else: nothing more can be submitted

  // Time spent: seconds the page was visible.
  let visibleMs = 0;
  let visibleSince = document.visibilityState === "visible" ? performance.now() : null;
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") visibleSince = performance.now();
    else if (visibleSince !== null) { visibleMs += performance.now() - visibleSince; visibleSince = null; }
  });
  const secondsSpent = () => (visibleMs + (visibleSince !== null ? performance.now() - visibleSince : 0)) / 1000;

  const ordinal = (n) => n + (["th", "st", "nd", "rd"][(n % 100 - 20) % 10] || ["th", "st", "nd", "rd"][n % 100] || "th");
  const byNumber = (n) => cards.find((c) => c.dataset.number === String(n));
  const currentOrder = () => Array.from(list.querySelectorAll(".completion"));
  const tieBox = (card) => card.querySelector(".tie");

  function refresh() {
    if (isRanking) {
      let rank = 0;
      currentOrder().forEach((card, i) => {
        const isPlaced = i < placed;
        const tied = allowTies && i > 0 && isPlaced && tieBox(card).checked;
        if (!tied) rank = i + 1;
        card.classList.toggle("placed", isPlaced);
        card.querySelector(".place").textContent = isPlaced ? ordinal(rank) + (tied ? " (level)" : "") : "not placed";
        card.querySelector(".up").disabled = isPlaced && i === 0;
        card.querySelector(".down").disabled = !isPlaced;
        if (tieBox(card)) tieBox(card).disabled = i === 0 || !isPlaced;
      });
      progress.textContent = `${placed} of ${cards.length} placed`;
      submitButton.disabled = busy || lost || placed < cards.length;
    } else {
      const done = cards.every((c) => c.querySelector(".choice:checked"));
      cards.forEach((c) => c.classList.toggle("selected", c === selected));
      submitButton.disabled = busy || lost || !done;
    }
  }

  // Put ``card`` at position ``index`` of the list (counted without the card itself).
  function moveTo(card, index) {
    const others = currentOrder().filter((c) => c !== card);
    list.insertBefore(card, others[index] || null);
  }

  function placedOne() {
    placed += 1;
    if (placed === cards.length - 1) placed = cards.length; // the last one has only one place left
  }

  function place(card, tied) {
    if (currentOrder().indexOf(card) < placed) return; // already placed
    moveTo(card, placed);
    if (allowTies) tieBox(card).checked = tied && placed > 0;
    placedOne();
    refresh();
  }

  function unplace(card) {
    if (currentOrder().indexOf(card) >= placed) return;
    moveTo(card, placed - 1); // first of the unplaced: the answers below it move up
    if (allowTies) tieBox(card).checked = false;
    placed -= 1;
    refresh();
  }

  function moveUp(card) {
    const index = currentOrder().indexOf(card);
    if (index >= placed) place(card, false);
    else if (index > 0) { moveTo(card, index - 1); refresh(); }
  }

  function moveDown(card) {
    const index = currentOrder().indexOf(card);
    if (index < placed - 1) { moveTo(card, index + 1); refresh(); }
    else if (index === placed - 1) unplace(card);
  }

  function startOver() {
    initialOrder.forEach((card) => { list.appendChild(card); if (allowTies) tieBox(card).checked = false; });
    placed = 0;
    tieNext = false;
    setStatus("");
    refresh();
  }

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function rankingTiers() {
    const tiers = [];
    currentOrder().forEach((card, i) => {
      const id = Number(card.dataset.id);
      if (allowTies && i > 0 && tieBox(card).checked) tiers[tiers.length - 1].push(id);
      else tiers.push([id]);
    });
    return tiers;
  }

  function unusable() {
    const flags = {};
    cards.forEach((card) => {
      const reason = card.querySelector(".unusable").value;
      if (reason) flags[card.dataset.id] = reason;
    });
    return flags;
  }

  async function post(path, body) {
    busy = true;
    refresh();
    try {
      const response = await fetch(path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
      });
      if (response.status === 401) { window.location.assign(root + "/login?next=/task"); return; }
      if (!response.ok) {
        const problem = await response.json().catch(() => ({ detail: response.statusText }));
        if (response.status === 409 && /guidelines/.test(problem.detail || "")) { window.location.assign(root + "/guidelines"); return; }
        if (response.status === 409 && /expired/.test(problem.detail || "")) {
          lost = true;
          setStatus("Not saved: your time on this task ran out and another labeler has taken it. " +
            "Your answer stays on screen so you can copy your comment. ", true);
          const next = document.createElement("a");
          next.href = root + "/task"; next.className = "button"; next.id = "next-task"; next.textContent = "Next task";
          status.appendChild(next);
          leaseNote.textContent = "";
          busy = false;
          refresh();
          return;
        }
        setStatus("Not saved: " + (problem.detail || response.statusText), true);
        busy = false;
        refresh();
        return;
      }
      setStatus("Saved. Loading the next task…");
      window.location.assign(root + "/task");
    } catch (err) {
      setStatus("Not saved (network problem); press Enter to try again.", true);
      busy = false;
      refresh();
    }
  }

  function submit() {
    if (submitButton.disabled) return;
    const comment = document.getElementById("comment").value.trim() || null;
    const common = { unusable: unusable(), comment: comment, seconds_spent: secondsSpent(), idempotency_key: key };
    let answer;
    if (isRanking) {
      answer = rankingTiers();
    } else {
      answer = {};
      cards.forEach((card) => { answer[card.dataset.id] = Number(card.querySelector(".choice:checked").value); });
    }
    post(`${root}/api/tasks/${assignment}/${answerField}`, Object.assign({ [answerField]: answer }, common));
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target.closest && target.closest("textarea, input, select, summary, details.skip")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Enter") {
      // On a focused button or link Enter is that control's own action ("Start over", "Skip"), not Submit.
      if (target.closest && target.closest("button, a[href], [role=button]")) return;
      event.preventDefault(); submit(); return;
    }
    if (isRanking) {
      if (event.key === "=" && allowTies) { tieNext = placed > 0; setStatus(tieNext ? "Next answer goes level with the previous one." : ""); return; }
      if (event.key === "Backspace") { event.preventDefault(); startOver(); return; }
      const card = /^[1-9]$/.test(event.key) ? byNumber(event.key) : null;
      if (card) { event.preventDefault(); place(card, tieNext); tieNext = false; setStatus(""); }
    } else {
      const card = /^[1-9]$/.test(event.key) ? byNumber(event.key) : null;
      if (card) { selected = card; card.focus(); refresh(); return; }
      const choice = selected && selected.querySelector(`.choice[data-key="${CSS.escape(event.key)}"]`);
      if (choice) { choice.checked = true; refresh(); }
    }
  });

  // Drag and drop (ranking): the dragged card is placed where it is dropped among the placed answers (or right
  // after them); the other cards keep their state.
  let dragged = null;
  if (isRanking) {
    cards.forEach((card) => {
      card.addEventListener("dragstart", (event) => { dragged = card; card.classList.add("dragging"); event.dataTransfer.effectAllowed = "move"; event.dataTransfer.setData("text/plain", card.dataset.id); });
      card.addEventListener("dragend", () => { card.classList.remove("dragging"); dragged = null; });
      card.addEventListener("dragover", (event) => { if (dragged && dragged !== card) event.preventDefault(); });
      card.addEventListener("drop", (event) => {
        event.preventDefault();
        if (!dragged || dragged === card) return;
        const box = card.getBoundingClientRect();
        const after = event.clientY > box.top + box.height / 2;
        const wasPlaced = currentOrder().indexOf(dragged) < placed;
        const others = currentOrder().filter((c) => c !== dragged);
        const target = others.indexOf(card) + (after ? 1 : 0);
        if (wasPlaced) {
          moveTo(dragged, Math.min(target, placed - 1));
        } else {
          moveTo(dragged, Math.min(target, placed));
          placedOne();
        }
        refresh();
      });
      // Tap or click: place the answer next, or take a placed one out. Clicks on the card's own controls, and
      // clicks that end a text selection, are not taps.
      card.addEventListener("click", (event) => {
        if (event.target.closest("button, select, input, label, textarea, a")) return;
        if (String(window.getSelection ? window.getSelection() : "").length > 0) return;
        if (busy || lost) return;
        if (currentOrder().indexOf(card) < placed) unplace(card);
        else { place(card, tieNext); tieNext = false; }
        setStatus("");
      });
      const up = card.querySelector(".up");
      const down = card.querySelector(".down");
      up.addEventListener("click", () => { moveUp(card); if (up.disabled) down.focus(); else up.focus(); });
      down.addEventListener("click", () => { moveDown(card); if (down.disabled) up.focus(); else down.focus(); });
    });
    if (allowTies) cards.forEach((card) => tieBox(card).addEventListener("change", refresh));
    resetButton.addEventListener("click", startOver);
  } else {
    cards.forEach((card) => card.querySelectorAll(".choice").forEach((input) => input.addEventListener("change", refresh)));
  }

  // When the reservation runs out (seconds counted from the server's answer, so a wrong clock does not matter).
  const leaseEnds = performance.now() + Number(leaseNote.dataset.secondsLeft) * 1000;
  const clock = (ms) => new Date(Date.now() + ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  function showLease() {
    if (lost) return;
    const left = leaseEnds - performance.now();
    if (left > 0) {
      const minutes = Math.ceil(left / 60000);
      leaseNote.textContent = `Reserved for you until ${clock(left)} (${minutes} min left).`;
      leaseNote.classList.remove("error");
    } else {
      leaseNote.textContent = "Your reservation has run out. Submit anyway: your answer is saved unless another " +
        "labeler has taken this task meanwhile.";
      leaseNote.classList.add("error");
    }
  }
  showLease();
  setInterval(showLease, 10000);

  submitButton.addEventListener("click", submit);
  document.getElementById("skip").addEventListener("click", () => {
    const reason = document.getElementById("skip-reason").value.trim();
    if (!reason) { setStatus("Say why you skip this task.", true); return; }
    post(`${root}/api/tasks/${assignment}/skip`, { reason: reason, idempotency_key: key });
  });
  refresh();
})();
