/* The console's own script: the CSRF token on every htmx request, and the charts. */
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
  });

  function draw(root) {
    if (!window.echarts || !root.querySelectorAll) { return; }
    var boxes = root.querySelectorAll("[data-chart]");
    for (var i = 0; i < boxes.length; i++) {
      var data = JSON.parse(boxes[i].getAttribute("data-chart"));
      var series = [{ name: "新会员", type: "bar", data: data.new_members }];
      var axes = [{ type: "value", name: "新会员", minInterval: 1 }];
      if (data.sales) {
        series.push({ name: "销售额（元）", type: "line", yAxisIndex: 1, data: data.sales });
        axes.push({ type: "value", name: "元" });
      }
      var chart = window.echarts.init(boxes[i]);
      chart.setOption({
        tooltip: { trigger: "axis" }, legend: { top: 0 },
        grid: { left: 40, right: 40, top: 40, bottom: 30 },
        xAxis: { type: "category", data: data.dates }, yAxis: axes, series: series
      });
    }
  }
  // htmx:load fires for the page and for every element htmx swaps in (an outerHTML swap's
  // afterSwap target is the element replaced, which is gone).
  document.addEventListener("htmx:load", function (event) { draw(event.detail.elt); });
  window.addEventListener("resize", function () {
    var boxes = document.querySelectorAll("[data-chart]");
    for (var i = 0; i < boxes.length; i++) {
      var chart = window.echarts && window.echarts.getInstanceByDom(boxes[i]);
      if (chart) { chart.resize(); }
    }
  });
})();

/* --- bookings --- */
(function () {
  "use strict";
  // The store and date pickers show the chosen day at once; the panel's 关闭 empties it.
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field.hasAttribute && field.hasAttribute("data-autosubmit") && field.form) {
      field.form.submit();
    }
  });
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-close-panel]");
    var panel = link && link.closest(".bk-panel");
    if (panel) {
      event.preventDefault();
      panel.innerHTML = "";
    }
  });
})();

/* --- home --- */
/* Tier charts: members per tier now (data-tiers) and daily ups / downs (data-tier-moves). */
(function () {
  "use strict";
  function tiers(box, data) {
    return {
      tooltip: { trigger: "axis" }, grid: { left: 40, right: 20, top: 20, bottom: 30 },
      xAxis: { type: "category", data: data.names },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ name: "会员数", type: "bar", data: data.members, label: { show: true, position: "top" } }]
    };
  }
  function moves(box, data) {
    var downs = [];
    for (var i = 0; i < data.downs.length; i++) { downs.push(-data.downs[i]); }
    return {
      tooltip: { trigger: "axis" }, legend: { top: 0 },
      grid: { left: 40, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: data.dates }, yAxis: { type: "value", minInterval: 1 },
      series: [{ name: "升级", type: "bar", stack: "moves", data: data.ups },
               { name: "降级", type: "bar", stack: "moves", data: downs }]
    };
  }
  var kinds = { "data-tiers": tiers, "data-tier-moves": moves };
  function draw() {
    if (!window.echarts) { return; }
    for (var attr in kinds) {
      var boxes = document.querySelectorAll("[" + attr + "]");
      for (var i = 0; i < boxes.length; i++) {
        if (window.echarts.getInstanceByDom(boxes[i])) { continue; }
        var data = JSON.parse(boxes[i].getAttribute(attr));
        window.echarts.init(boxes[i]).setOption(kinds[attr](boxes[i], data));
      }
    }
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
  window.addEventListener("resize", function () {
    for (var attr in kinds) {
      var boxes = document.querySelectorAll("[" + attr + "]");
      for (var i = 0; i < boxes.length; i++) {
        var chart = window.echarts && window.echarts.getInstanceByDom(boxes[i]);
        if (chart) { chart.resize(); }
      }
    }
  });
})();

/* --- failed requests --- */
/* htmx swaps nothing on an error answer: say so, instead of a button that seems to do nothing. */
(function () {
  "use strict";
  var WHY = {
    400: "输入有误，请检查后重试。", 401: "登录已失效，请重新登录。",
    403: "没有权限，或页面已过期，请刷新后重试。", 404: "找不到了：可能已删除，或不属于本店。",
    409: "情况已有变化，请刷新页面后再操作。", 429: "操作太频繁，请稍后再试。"
  };
  function tell(text) {
    var box = document.getElementById("console-error");
    if (!box) {
      box = document.createElement("div");
      box.id = "console-error";
      box.setAttribute("role", "alert");
      box.addEventListener("click", function () { box.hidden = true; });
      document.body.appendChild(box);
    }
    box.textContent = text;
    box.hidden = false;
    clearTimeout(box.timer);
    box.timer = setTimeout(function () { box.hidden = true; }, 6000);
  }
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    if (event.detail.xhr.getResponseHeader("HX-Redirect")) { return; }  // htmx goes there
    tell(WHY[status] || "服务器出错（" + status + "），请稍后再试。");
  });
  document.addEventListener("htmx:sendError", function () {
    tell("网络连接失败，请检查网络后重试。");
  });
})();
