// The exchange page's live candlestick chart and recent trades, fed by /trade/ws (the
// dashboard relays the exchange's /ws/candles and /ws/trades for the signed-in member).
// Stream rule (exchange README): keep the last seq per channel; skip seq <= it; a prev_seq
// above it means a missed message -> reconnect for a fresh snapshot.
(function () {
  "use strict";
  const box = document.getElementById("chart");
  if (!box || !window.LightweightCharts) return;
  const status = document.getElementById("chart-status");
  const tradesBody = document.querySelector("#recent-trades tbody");
  const lastCell = document.getElementById("ticker-last");
  const market = box.dataset.market;
  const fmt = (n) => Number(n).toLocaleString("en-US");
  const LC = window.LightweightCharts;
  const chart = LC.createChart(box, {
    autoSize: true,
    // the library's logo injects a <style> element, which the CSP (style-src 'self') blocks:
    // the page credits TradingView in its own markup instead (below the chart)
    layout: { textColor: "#1d2733", background: { color: "#ffffff" }, attributionLogo: false },
    timeScale: { timeVisible: true, secondsVisible: false },
    localization: { priceFormatter: (p) => fmt(Math.round(p)) },
  });
  const series = chart.addSeries(LC.CandlestickSeries, {
    priceFormat: { type: "price", precision: 0, minMove: 1 },
  });
  let candles = new Map();
  let interval = box.dataset.interval || "1m";
  let socket = null;
  let seq = {};
  let retry = 1000;
  let closing = false;

  function show() {
    const all = [...candles.values()].sort((a, b) => a.time - b.time);
    series.setData(all.map((c) => ({ time: c.time, open: c.open, high: c.high, low: c.low, close: c.close })));
    const trades = all.reduce((sum, c) => sum + c.trades, 0);
    box.dataset.candles = String(all.length);
    box.dataset.trades = String(trades);
    const last = all.length ? all[all.length - 1] : null;
    box.dataset.last = last ? String(last.close) : "";
    status.textContent = "Live · " + interval + " candles" + (last ? " · last trade " + fmt(last.close) : " · no trades yet");
    if (last && lastCell) lastCell.textContent = fmt(last.close);
  }

  function addTrades(list) {
    if (!tradesBody) return;
    for (const t of list) {
      if (tradesBody.querySelector('tr[data-seq="' + t.seq + '"]')) continue;
      const row = document.createElement("tr");
      row.dataset.seq = String(t.seq);
      const when = new Date(t.time * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
      for (const [text, num] of [[when, false], [fmt(t.price), true], [fmt(t.quantity), true], [t.taker_side, false]]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (num) cell.className = "num";
        row.appendChild(cell);
      }
      tradesBody.insertBefore(row, tradesBody.firstChild);
    }
    while (tradesBody.rows.length > 20) tradesBody.deleteRow(tradesBody.rows.length - 1);
  }

  function onMessage(event) {
    const msg = JSON.parse(event.data);
    const channel = msg.channel;
    if (msg.type === "resync") return reconnect();
    if (msg.type === "snapshot") {
      seq[channel] = msg.seq;
      if (channel === "candles") {
        candles = new Map(msg.candles.map((c) => [c.time, c]));
        show();
      } else if (channel === "trades") {
        addTrades([...msg.trades].reverse());
      }
      return;
    }
    if (seq[channel] === undefined || msg.seq <= seq[channel]) return;
    if (msg.prev_seq > seq[channel]) return reconnect();
    seq[channel] = msg.seq;
    if (channel === "candles") {
      for (const c of msg.candles) candles.set(c.time, c);
      show();
    } else if (channel === "trades") {
      addTrades(msg.trades);
    }
  }

  function connect() {
    closing = false;
    seq = {};
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = scheme + "//" + location.host + "/trade/ws?market=" + encodeURIComponent(market) + "&interval=" + interval;
    socket = new WebSocket(url);
    socket.onopen = () => { retry = 1000; status.textContent = "Live · " + interval + " candles"; };
    socket.onmessage = onMessage;
    socket.onclose = () => {
      if (closing) return;
      status.textContent = "Disconnected · reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  function reconnect() {
    closing = true;
    if (socket) socket.close();
    connect();
  }

  for (const button of document.querySelectorAll("#intervals button[data-interval]")) {
    button.addEventListener("click", () => {
      interval = button.dataset.interval;
      box.dataset.interval = interval;
      for (const b of document.querySelectorAll("#intervals button")) b.setAttribute("aria-pressed", String(b === button));
      candles = new Map();
      show();
      reconnect();
    });
  }
  connect();
})();
