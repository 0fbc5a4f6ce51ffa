/*
 * The vendorpulse dashboard: renders the snapshots, new_order notifications and stock alerts that
 * VendorPulseClient receives from this server. It asks for delta updates (the client applies the merge
 * patches; `render` always gets the whole snapshot); each stock alert shows as a toast for a few
 * seconds and stays in the list of the latest ALERTS_SIZE. The client is the npm package's script-tag build (api/client-ts, built by
 * `make client` into /static/vendorpulse-client.js). Token from ?token= (then kept in sessionStorage and
 * removed from the address bar) or from the form; vendor from ?vendor= or the token's vendor_id claim.
 * Optional URL settings for the client: baseDelay, maxDelay (ms), maxAttempts, pingInterval (ms).
 */
(function () {
  "use strict";

  const $ = (selector, root = document) => root.querySelector(selector);
  const params = new URLSearchParams(location.search);
  const palette = ["#3d5afe", "#12a150", "#e8a317", "#d93a3a", "#8e44ad", "#00a3bf", "#f06292", "#7c8a9e"];
  const FEED_SIZE = 25;
  const ALERTS_SIZE = 10;
  const TOAST_MS = 8000;
  const STATE_TEXT = { out: "out of stock", low: "low stock", ok: "back in stock" };
  const still = matchMedia("(prefers-reduced-motion: reduce)").matches; // no chart animations then
  let client = null;
  let monthly = null;
  let categories = null;
  let orderCount = 0;
  let alertCount = 0;

  function claimsOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    } catch (e) {
      return null;
    }
  }

  // --- formatting: money is in the currency's minor units (contract §3)
  function money(minor, currency) {
    if (!currency) return new Intl.NumberFormat().format(minor);
    const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    return format.format(minor / Math.pow(10, format.resolvedOptions().maximumFractionDigits));
  }

  function major(minor, currency) {
    if (!currency) return minor;
    const digits = new Intl.NumberFormat(undefined, { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
    return minor / Math.pow(10, digits);
  }

  const count = (n) => new Intl.NumberFormat().format(n);
  const compact = new Intl.NumberFormat(undefined, { notation: "compact" });

  function monthLabel(month) {
    const [y, m] = month.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, 1)).toLocaleDateString(undefined, { month: "short", year: "2-digit", timeZone: "UTC" });
  }

  function trend(element, figure) {
    const arrows = { up: "▲", down: "▼", flat: "▬" };
    element.className = `trend ${figure.trend}`;
    element.dataset.trend = figure.trend;
    const pct = figure.percentage === null ? "new" : `${figure.percentage > 0 ? "+" : ""}${figure.percentage}%`;
    element.textContent = `${arrows[figure.trend]} ${pct} vs previous period`;
  }

  function setValue(card, text, raw) {
    const value = $(".value", card);
    if (value.dataset.value !== undefined && value.dataset.value !== String(raw)) {
      value.classList.add("changed");
      setTimeout(() => value.classList.remove("changed"), 800);
    }
    value.textContent = text;
    value.dataset.value = String(raw);
  }

  // --- rendering
  function render(snapshot) {
    const m = snapshot.metrics;
    const currency = snapshot.currency;
    const revenue = $('[data-testid="kpi-revenue"]');
    setValue(revenue, money(m.revenue.current, currency), m.revenue.current);
    trend($(".trend", revenue), m.revenue);
    $(".sub", revenue).textContent = `previous ${money(m.revenue.previous, currency)}`;

    const orders = $('[data-testid="kpi-orders"]');
    setValue(orders, count(m.orders.current), m.orders.current);
    trend($(".trend", orders), m.orders);
    $(".sub", orders).textContent = `previous ${count(m.orders.previous)}`;

    const customers = $('[data-testid="kpi-customers"]');
    setValue(customers, count(m.customers.total), m.customers.total);
    $(".trend", customers).className = "trend";
    $(".trend", customers).textContent = `${count(m.customers.new)} new · ${count(m.customers.returning)} returning`;
    $(".sub", customers).textContent = `in the last ${snapshot.periodDays} days`;

    const products = $('[data-testid="kpi-products"]');
    setValue(products, count(m.products.active), m.products.active);
    const stock = $(".trend", products);
    stock.className = `trend ${m.products.outOfStock ? "down" : m.products.lowStock ? "flat" : "up"}`;
    stock.textContent = `${count(m.products.lowStock)} low stock · ${count(m.products.outOfStock)} out of stock`;
    $(".sub", products).textContent = `active of ${count(m.products.total)} products`;

    for (const el of document.querySelectorAll(".period")) el.textContent = `last ${snapshot.periodDays} days`;
    $('[data-testid="as-of"]').textContent = `as of ${new Date(snapshot.asOf).toLocaleString()} · v${snapshot.version}`;
    $('[data-testid="as-of"]').dataset.version = snapshot.version;

    renderTop(snapshot.topProducts, currency);
    renderCharts(snapshot, currency);
  }

  function renderTop(top, currency) {
    const body = $('[data-testid="top-products"] tbody');
    body.replaceChildren();
    if (!top.length) {
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.colSpan = 4;
      cell.textContent = "no sales in this period yet";
      return;
    }
    top.forEach((p, i) => {
      const row = body.insertRow();
      row.dataset.productId = p.productId;
      row.insertCell().textContent = String(i + 1);
      const name = row.insertCell();
      name.textContent = p.name || p.productId;
      if (p.name) {
        const id = document.createElement("div");
        id.className = "pid";
        id.textContent = p.productId;
        name.appendChild(id);
      }
      const units = row.insertCell();
      units.className = "num";
      units.textContent = count(p.units);
      const revenue = row.insertCell();
      revenue.className = "num";
      revenue.textContent = money(p.revenue, currency);
      revenue.dataset.value = p.revenue;
    });
  }

  function renderCharts(snapshot, currency) {
    if (typeof Chart === "undefined") return;
    const months = snapshot.monthlyTrends;
    const labels = months.map((x) => monthLabel(x.month));
    const revenue = months.map((x) => major(x.revenue, currency));
    const orders = months.map((x) => x.orders);
    if (!monthly) {
      monthly = new Chart($("#monthly-chart"), {
        data: {
          labels,
          datasets: [
            { type: "bar", label: `Revenue${currency ? ` (${currency})` : ""}`, data: revenue, backgroundColor: "rgba(61, 90, 254, .75)", borderRadius: 4, yAxisID: "y" },
            { type: "line", label: "Orders", data: orders, borderColor: "#e8a317", backgroundColor: "#e8a317", cubicInterpolationMode: "monotone", pointRadius: 3, yAxisID: "y1" },
          ],
        },
        options: {
          responsive: true, maintainAspectRatio: false, ...(still ? { animation: false } : {}),
          interaction: { mode: "index", intersect: false },
          plugins: {
            legend: { position: "bottom" },
            tooltip: { callbacks: { label: (c) => (c.datasetIndex === 0 ? `Revenue ${money(months[c.dataIndex].revenue, currency)}` : `Orders ${count(c.raw)}`) } },
          },
          scales: {
            y: { beginAtZero: true, position: "left", ticks: { callback: (v) => compact.format(v) } },
            y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } },
          },
        },
      });
    } else {
      monthly.data.labels = labels;
      monthly.data.datasets[0].data = revenue;
      monthly.data.datasets[1].data = orders;
      monthly.update("none");
    }
    const cats = snapshot.salesByCategory;
    const catLabels = cats.map((c) => c.category);
    const catData = cats.map((c) => major(c.revenue, currency));
    if (!categories) {
      categories = new Chart($("#category-chart"), {
        type: "doughnut",
        data: { labels: catLabels, datasets: [{ data: catData, backgroundColor: palette, borderWidth: 1 }] },
        options: {
          responsive: true, maintainAspectRatio: false, cutout: "55%", ...(still ? { animation: false } : {}),
          plugins: {
            legend: { position: "right" },
            tooltip: { callbacks: { label: (c) => `${c.label}: ${money(cats[c.dataIndex].revenue, currency)} (${cats[c.dataIndex].percentage}%)` } },
          },
        },
      });
    } else {
      categories.data.labels = catLabels;
      categories.data.datasets[0].data = catData;
      categories.options.plugins.tooltip.callbacks.label = (c) => `${c.label}: ${money(cats[c.dataIndex].revenue, currency)} (${cats[c.dataIndex].percentage}%)`;
      categories.update("none");
    }
  }

  function addOrder(order) {
    const feed = $('[data-testid="order-feed"]');
    const empty = $(".empty", feed);
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.className = "fresh";
    li.dataset.orderId = order.orderId;
    const cells = [
      ["time", new Date(order.occurredAt).toLocaleTimeString()],
      ["order", order.orderId],
      ["customer", order.customerId],
      ["items", `${order.items} item${order.items === 1 ? "" : "s"}`],
      ["total", money(order.total, order.currency)],
    ];
    for (const [cls, text] of cells) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      li.appendChild(span);
    }
    feed.prepend(li);
    while (feed.children.length > FEED_SIZE) feed.lastElementChild.remove();
    orderCount += 1;
    $('[data-testid="feed-count"]').textContent = `${count(orderCount)} received`;
  }

  function alertText(alert) {
    const name = alert.name || alert.productId;
    return [`${name}: ${STATE_TEXT[alert.state] || alert.state}`, `stock ${count(alert.stock)} · threshold ${count(alert.threshold)} · was ${alert.previous}`];
  }

  function addAlert(alert) {
    const [title, detail] = alertText(alert);
    const toast = document.createElement("div");
    toast.className = `toast ${alert.state}`;
    toast.dataset.testid = "toast";
    toast.dataset.productId = alert.productId;
    toast.dataset.state = alert.state;
    const strong = document.createElement("strong");
    strong.textContent = title;
    const small = document.createElement("span");
    small.textContent = detail;
    toast.append(strong, small);
    $('[data-testid="toasts"]').prepend(toast);
    setTimeout(() => toast.remove(), TOAST_MS);

    const list = $('[data-testid="alert-list"]');
    const empty = $(".empty", list);
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.className = alert.state;
    li.dataset.eventId = alert.eventId;
    li.dataset.state = alert.state;
    const cells = [
      ["time", new Date(alert.occurredAt).toLocaleTimeString()],
      ["state", STATE_TEXT[alert.state] || alert.state],
      ["product", alert.name || alert.productId],
      ["items", `stock ${count(alert.stock)} / ${count(alert.threshold)}`],
    ];
    for (const [cls, text] of cells) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      li.appendChild(span);
    }
    list.prepend(li);
    while (list.children.length > ALERTS_SIZE) list.lastElementChild.remove();
    alertCount += 1;
    $('[data-testid="alert-count"]').textContent = `${count(alertCount)} received`;
  }

  function renderHealth() {
    if (!client) return;
    const h = client.connectionHealth();
    const badge = $('[data-testid="badge"]');
    let state = h.connectionState;
    let text;
    if (state === "connected") {
      text = h.latency === null ? "connected" : `connected · ${h.latency.toFixed(0)} ms`;
      if (!h.isHealthy) state = "slow";
    } else if (state === "reconnecting") {
      state = "disconnected";
      text = `disconnected · reconnecting (attempt ${h.reconnectAttempts + 1})`;
    } else if (state === "failed") {
      text = "disconnected · gave up (reload to retry)";
    } else {
      text = state;
    }
    badge.className = `badge badge-${state}`;
    badge.dataset.state = h.connectionState;
    $(".badge-text", badge).textContent = text;
    const s = client.statistics();
    $('[data-testid="health"]').textContent = [
      `latency ${h.latency === null ? "–" : `${h.latency.toFixed(1)} ms`} (avg of last ${client.samples.length})`,
      `uptime ${Math.floor(h.uptime)} s`,
      `reconnects ${s.reconnects}`,
      `queued ${h.queuedMessages}`,
      `dropped ${s.droppedMessages}`,
    ].join(" · ");
  }

  function start(token, vendor) {
    $("#connect-form").hidden = true;
    $("#dashboard").hidden = false;
    $('[data-testid="vendor"]').textContent = vendor;
    document.title = `${vendor} · vendorpulse`;
    const feed = $('[data-testid="order-feed"]');
    feed.innerHTML = '<li class="empty">waiting for orders…</li>';
    const options = { updates: params.get("updates") === "full" ? "full" : "delta" };
    for (const key of ["baseDelay", "maxDelay", "maxAttempts", "pingInterval"]) {
      if (params.has(key)) options[key] = Number(params.get(key));
    }
    if (typeof VendorPulseClient === "undefined") {
      $('[data-testid="health"]').textContent =
        "the dashboard's client (/static/vendorpulse-client.js) is missing: build it with `make client`";
      return;
    }
    client = new VendorPulseClient(location.origin, vendor, token, options);
    client.on("snapshot", render);
    client.on("new_order", addOrder);
    client.on("stock_alert", addAlert);
    client.on("state", renderHealth);
    client.on("latency", renderHealth);
    client.on("error", (e) => {
      renderHealth();
      $('[data-testid="health"]').textContent = e.message;
    });
    window.vendorpulse = client; // for the browser console (and the browser tests)
    client.connect();
    setInterval(renderHealth, 1000);
    renderHealth();
  }

  function init() {
    let token = params.get("token") || sessionStorage.getItem("vendorpulse.token");
    if (params.has("token")) {
      sessionStorage.setItem("vendorpulse.token", params.get("token"));
      params.delete("token");
      history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
    }
    const form = $("#connect-form");
    const tryStart = (t, v) => {
      const claims = claimsOf(t);
      const vendor = v || (claims && claims.vendor_id);
      if (!claims) return "that does not look like a JWT";
      if (!vendor) return "an admin token needs a vendor";
      sessionStorage.setItem("vendorpulse.token", t);
      start(t, vendor);
      return null;
    };
    if (token) {
      const problem = tryStart(token, params.get("vendor"));
      if (!problem) return;
      $('[data-testid="form-error"]').textContent = problem;
    }
    form.hidden = false;
    form.vendor.value = params.get("vendor") || "";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const problem = tryStart(form.token.value.trim(), form.vendor.value.trim());
      $('[data-testid="form-error"]').textContent = problem || "";
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
