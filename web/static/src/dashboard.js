// 经济运行监测: draws the dashboard's charts with ECharts (tree-shaken: line and bar charts, SVG renderer).
// Each chart is an element `.chart[data-chart]` holding the JSON of engine.services.charts.Chart.as_dict()
// (the server draws the same description as SVG/PNG for the bulletin). An optional data-links attribute
// holds one URL per category: clicking a bar or point drills down there. The CSP forbids inline scripts,
// so nothing but data comes from the page.
import * as echarts from "echarts/core";
import { BarChart, LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, MarkLineComponent, TitleComponent, TooltipComponent } from "echarts/components";
import { SVGRenderer } from "echarts/renderers";

echarts.use([BarChart, LineChart, GridComponent, LegendComponent, MarkLineComponent, TitleComponent,
  TooltipComponent, SVGRenderer]);

const FONT = "'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',sans-serif";

/** Build the ECharts option of a chart description. */
export function optionOf(chart) {
  const rotate = chart.categories.length > 8 || chart.categories.some((c) => c.length > 5);
  const series = chart.series.map((s, index) => {
    const item = {
      name: s.name,
      type: s.kind === "bar" ? "bar" : "line",
      data: s.values,
      itemStyle: { color: s.color },
      lineStyle: s.dashed ? { type: "dashed", color: s.color } : { color: s.color },
      connectNulls: false,
      emphasis: { focus: "series" },
    };
    if (s.stack) item.stack = s.stack;
    if (index === 0 && chart.target !== null && chart.target !== undefined) {
      item.markLine = {
        symbol: "none",
        lineStyle: { color: "#cf222e", type: "dashed" },
        label: { formatter: chart.target_label || String(chart.target), position: "insideEndTop" },
        data: [{ yAxis: chart.target }],
      };
    }
    return item;
  });
  // The unit goes on the subtitle line ("单位：亿元"), never beside the axis, where it ran into the legend.
  const subtitle = [chart.subtitle, chart.unit ? `单位：${chart.unit}` : ""].filter(Boolean).join(" · ");
  return {
    textStyle: { fontFamily: FONT },
    title: { text: chart.title, subtext: subtitle, left: 8, textStyle: { fontSize: 15 } },
    tooltip: { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "—" : `${v}${chart.unit === "%" ? "%" : ""}`) },
    legend: { top: subtitle ? 58 : 34, left: 8 },
    grid: { left: 56, right: 24, top: subtitle ? 96 : 72, bottom: rotate ? 80 : 32, containLabel: false },
    xAxis: { type: "category", data: chart.categories, axisLabel: { rotate: rotate ? 35 : 0, interval: 0 } },
    yAxis: { type: "value" },
    series,
  };
}

/** Draw every chart of a page (or of a fragment swapped in by htmx). */
export function drawCharts(root = document) {
  for (const element of root.querySelectorAll(".chart[data-chart]")) {
    if (element.dataset.drawn) continue;
    let chart;
    try {
      chart = JSON.parse(element.dataset.chart);
    } catch {
      continue;
    }
    element.dataset.drawn = "1";
    const instance = echarts.init(element, null, { renderer: "svg" });
    instance.setOption(optionOf(chart));
    const links = element.dataset.links ? JSON.parse(element.dataset.links) : null;
    if (links) {
      instance.on("click", (params) => {
        const url = links[params.dataIndex];
        if (url && url.startsWith("/")) window.location.assign(url);
      });
    }
    new ResizeObserver(() => instance.resize()).observe(element);
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => drawCharts());
} else {
  drawCharts();
}
document.body?.addEventListener("htmx:afterSwap", (event) => drawCharts(event.target));
window.jzflowDashboard = { drawCharts, optionOf };
