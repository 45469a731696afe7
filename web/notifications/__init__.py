"""通知: the user's in-app notifications; open one (marks it read), mark all read. 通知设置: one's own channels,
webhook, language (engine.notify.language: pages once logged in, e-mail and own webhooks), a test notice and the last
deliveries."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import refresh
from flask_login import current_user, login_required

from engine.notify import language, notifications, settings
from web import language as page_language
from web import once
from web.common import commit, current_actor, db_session
from web.guards import id_arg
from web.notifications import wording

bp = Blueprint("notifications", __name__)


def safe_link(link: str | None) -> str | None:
    """Return a notification's link if it is a same-site path (never redirect off site)."""
    if not link:
        return None
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or not link.startswith("/") or link.startswith("//") or "\\" in link:
        return None
    return link


@bp.get("/notifications")
@login_required
def index() -> ResponseReturnValue:
    before = id_arg("before")
    unread_only = request.args.get("unread") == "1"
    page = notifications.page(db_session(), current_actor(), before_id=before, unread_only=unread_only)
    return render_template("notifications/index.html", page=page, unread_only=unread_only, safe_link=safe_link,
                           suppressed=notifications.suppressed(db_session(), page.items), worded=wording.of)


@bp.post("/notifications/<int:notification_id>/read")
@login_required
def read(notification_id: int) -> ResponseReturnValue:
    note = notifications.mark_read(db_session(), notification_id=notification_id, actor=current_actor())
    commit()
    if request.form.get("open") == "1":
        target = safe_link(note.link)
        if target:
            return redirect(target)
    return redirect(url_for("notifications.index"))


@bp.post("/notifications/read-all")
@login_required
def read_all() -> ResponseReturnValue:
    count = notifications.mark_all_read(db_session(), actor=current_actor())
    commit()
    flash(_("已将 %(count)s 条通知标为已读", count=count), "info")
    return redirect(url_for("notifications.index"))


@bp.get("/notifications/settings")
@login_required
def settings_page() -> ResponseReturnValue:
    return render_template("notifications/settings.html", shown=settings.view(db_session(), current_actor()),
                           kinds=settings.KINDS, languages=language.LANGUAGES, language=current_user.user.language)


@bp.post("/notifications/settings")
@login_required
def save_settings() -> ResponseReturnValue:
    # A resend (a double click, a slow answer): the first's answer, not "changed since" by its own first copy; the
    # webhook's address (its key) enters the form's stored print only keyed (web.once)
    if once.first_answer(secret=("webhook_url",)) is None:
        form = request.form
        channels = {kind: [c[:20] for c in form.getlist(f"channels_{kind}")[:5]] for kind in settings.KINDS}
        settings.save(db_session(), actor=current_actor(), channels=channels,
                      webhook_url=form.get("webhook_url", "")[:600], flavor=form.get("flavor", "robot")[:20],
                      seen=form.get("seen", "")[:64])
        once.commit_once(url_for("notifications.settings_page"))
    flash(_("通知设置已保存"), "info")
    return redirect(url_for("notifications.settings_page"))


@bp.post("/notifications/settings/language")
@login_required
def save_language() -> ResponseReturnValue:
    """Save one's own language (never anyone else's: no user is named) and set this browser's cookie to it."""
    chosen = request.form.get("language", "")[:20]
    language.choose(db_session(), actor=current_actor(), language=chosen)  # InvalidInput names the field
    commit()
    refresh()  # the flash below in the language just chosen
    flash(_("语言已保存：登录后的页面、邮件和个人 Webhook 将使用此语言"), "info")
    response = redirect(url_for("notifications.settings_page"))
    locale = page_language.locale_of(chosen)
    return page_language.remember(response, locale) if locale else response


@bp.post("/notifications/settings/test")
@login_required
def send_test() -> ResponseReturnValue:
    count = settings.send_test(db_session(), actor=current_actor())
    commit()
    flash(_("已排队发送 %(count)s 条测试通知，稍后可在下方查看投递状态", count=count), "info")
    return redirect(url_for("notifications.settings_page"))
