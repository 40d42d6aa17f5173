// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  // The answer to a post (a wrong code, say) is kept in history as the page's own address:
  // Reload or Back shows the page afresh instead of the browser's "Confirm Form Resubmission",
  // which would post the same code once more.
  const here = document.querySelector("main[data-here]");
  if (here) history.replaceState(null, "", here.dataset.here);
  const status = document.querySelector(".copied");
  const say = (key) => { if (status) status.textContent = status.dataset[key] || ""; };
  document.querySelectorAll("[data-copy]").forEach((button) => {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
        say("done");
      } catch (e) {
        say("failed");
      }
    });
  });
  // "Can't scan?" stays open across a wrong code for whoever typed the key by hand: the
  // answer is a new page, and the key would fold away just when it is to be checked.
  const manual = document.querySelector("details.manual");
  if (manual) {
    // Keyed by where the code goes (the page's own address is /authorize at first).
    const form = document.querySelector("details.manual ~ form");
    const key = `manual-open:${form ? form.getAttribute("action") : location.pathname}`;
    try {
      if (sessionStorage.getItem(key)) manual.open = true;
      manual.addEventListener("toggle", () => {
        if (manual.open) sessionStorage.setItem(key, "1");
        else sessionStorage.removeItem(key);
      });
    } catch (e) {
      // No storage (a locked-down browser): the section folds as before.
    }
  }
  const expiry = document.querySelector(".expiry[data-expires-in]");
  if (expiry) {
    const before = Number(expiry.dataset.warnBefore);
    const warning = expiry.querySelector("[aria-live]");
    const more = expiry.querySelector("form");  // none once the sign-in had all its time
    let timers = [];
    const schedule = (end) => {
      timers.forEach(clearTimeout);
      const loaded = performance.now();
      timers = [
        // Shortly before the end (at once if less is left): the warning, read out by screen
        // readers as its text appears, and the button for more time. It says how long is
        // left unless less is left than it says: the page came late, or a background tab's
        // timer did.
        setTimeout(() => {
          const left = end - (performance.now() - loaded) / 1000;
          warning.textContent = left > before - 10 ? warning.dataset.text : warning.dataset.soon;
          if (more) more.hidden = false;
          // Shown at the window's foot: what the user is typing in stays in view above it.
          if (document.activeElement && document.activeElement !== document.body) {
            document.activeElement.scrollIntoView({ block: "nearest" });
          }
        }, Math.max(0, end - before) * 1000),
        // At the end, say it has ended: "More time" can no longer help, and no form can be
        // sent (the session ended with the sign-in), nor what they were for read or followed
        // (instructions, the other factor's link). The way on is back to the IdP.
        setTimeout(() => {
          document.querySelectorAll("main form, main > :not(.brand, h1, .account, .expiry)")
            .forEach((element) => { element.hidden = true; });
          warning.textContent = warning.dataset.expired;
          // The page now says only that: its heading and title no longer ask for a code, and
          // the message leaves the window's foot for the card, under the heading.
          const heading = document.getElementById("page-title");
          const site = document.title.slice(document.title.lastIndexOf(" · "));
          document.title = expiry.dataset.endedTitle + site;
          heading.textContent = expiry.dataset.endedTitle;
          expiry.classList.add("ended");
          const back = expiry.querySelector("[data-way-back]");
          back.hidden = false;
          // The focus was in a form now hidden (More time, the code field): on the way on,
          // not lost to the page.
          if (!document.activeElement || document.activeElement.closest("[hidden]")
              || document.activeElement === document.body) {
            back.querySelector("a").focus();
          }
        }, Math.max(0, end) * 1000),
      ];
    };
    schedule(Number(expiry.dataset.expiresIn));
    // "More time" without leaving the page, so what the user typed stays. The answer is this
    // page again: its countdown, and its form tokens (they last as long as the sign-in), take
    // the place of ours. Anything else (the sign-in ended, or moved on in another tab): this
    // page's address is fetched afresh and shows it.
    more?.addEventListener("submit", async (event) => {
      event.preventDefault();
      let fresh = null;
      try {
        const answer = await fetch(more.action, { method: "POST", body: new FormData(more) });
        const page = new DOMParser().parseFromString(await answer.text(), "text/html");
        fresh = answer.ok ? page.querySelector(".expiry[data-expires-in]") : null;
        if (fresh && fresh.dataset.page === expiry.dataset.page) {
          const token = page.querySelector("input[name=csrf_token]").value;
          document.querySelectorAll("input[name=csrf_token]").forEach((i) => { i.value = token; });
        } else {
          fresh = null;
        }
      } catch (e) {
        fresh = null;
      }
      if (!fresh) {
        window.location.replace(window.location.href);
        return;
      }
      expiry.dataset.expiresIn = fresh.dataset.expiresIn;
      schedule(Number(fresh.dataset.expiresIn));
      warning.textContent = "";
      more.hidden = true;
      if (!fresh.querySelector("form")) more.remove();  // that was the last: none is offered
      const field = document.querySelector("input[name=otp], input[name=recovery_code]");
      if (field) field.focus();  // the button is gone: back where the user was typing
    });
  }
  // After a few wrong codes the next one is looked at only after a wait, which the error
  // names: until it has passed the code's button is dimmed and a post is held back, rather
  // than refused with "Too many wrong codes" and the typed code lost.
  const error = document.querySelector("#error[data-wait]");
  const field = document.querySelector("input[name=otp], input[name=recovery_code]");
  const held = error && field ? field.form : null;
  if (held) {
    const button = held.querySelector("button.primary");
    button.setAttribute("aria-disabled", "true");
    // The seconds left, counted down on the button: seen, not read out every second (the
    // alert said how long once), in the digits of the page's language as the alert's are.
    const left = document.createElement("span");
    left.setAttribute("aria-hidden", "true");
    left.className = "seconds-left";
    button.append(left);
    const digits = new Intl.NumberFormat(document.documentElement.lang);
    // The page's own clock (performance.now), not the device's: a clock set back (the user
    // fixing it, as a wrong-clock error asks) must not hold the button any longer.
    const until = performance.now() + Number(error.dataset.wait) * 1000;
    const tick = () => {
      const seconds = Math.ceil((until - performance.now()) / 1000);
      if (seconds > 0) {
        left.textContent = digits.format(seconds);
        setTimeout(tick, Math.min(1000, until - performance.now() - (seconds - 1) * 1000));
        return;
      }
      left.remove();
      button.removeAttribute("aria-disabled");
      // Said in the alert, so a screen reader hears that the wait is over, not only sees
      // the button come back.
      error.append(` ${error.dataset.waited}`);
    };
    tick();
  }
  // A double click posts a form twice: the second post meets a sign-in the first one just
  // finished, and the browser shows that answer ("already complete") instead of following the
  // first back to the sign-in page. So a page sends one form, once; Back (pageshow) re-arms it.
  // Not by disabling the button: a disabled button's name and value are not sent. Re-armed
  // after a while too, for a post the user stopped (Esc) or that failed without a new page.
  let sent = false;
  document.querySelectorAll("form").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (event.defaultPrevented) return;  // sent another way ("More time"), or not at all
      const waiting = form === held && form.querySelector("[aria-disabled=true]");
      if (sent || waiting) {
        event.preventDefault();
        if (waiting) error.focus();  // the error says how long to wait: read it out again
        return;
      }
      sent = true;
      setTimeout(() => { sent = false; }, 10000);
    });
  });
  window.addEventListener("pageshow", () => { sent = false; });
  document.querySelectorAll("[data-print]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", () => window.print());
  });
  // A page with no way on that the bridge knows (an expired link, an unknown sign-in): the
  // page the user came from is their sign-in page, one step back. Not offered to a tab that
  // opened here (nothing to go back to).
  const back = document.querySelector("[data-history-back]");
  if (back && window.history.length > 1) {
    back.hidden = false;
    back.querySelector("button").addEventListener("click", () => {
      window.history.back();
      // history.length counts forward entries too: where Back led nowhere, the page is still
      // here a moment later, and the button goes (the text says where to go).
      setTimeout(() => { back.hidden = true; }, 1500);
    });
    // Another language of this page is this page: Go back must not lead to it.
    document.querySelectorAll(".languages a").forEach((link) => {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        window.location.replace(link.href);
      });
    });
  }
});
