"""Check-in reason codes: denials are data, with display text in both languages."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    ADMITTED = "admitted"
    MALFORMED = "malformed"
    FORGED = "forged"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    WRONG_PERFORMANCE = "wrong_performance"
    WRONG_CHANNEL = "wrong_channel"
    TOO_EARLY = "too_early"
    TOO_LATE = "too_late"
    ALREADY_USED = "already_used"
    DAILY_LIMIT = "daily_limit"  # entries per venue day reached
    COOLDOWN = "cooldown"  # too soon after the previous entry
    NO_REENTRY = "no_reentry"  # the ticket left and this channel does not let it back in
    STILL_INSIDE = "still_inside"  # exits are required before the next entry
    LATECOMER = "latecomer"  # the performance has started; latecomers use other channels
    NOT_TODAY = "not_today"  # weekday or date outside what the ticket or card allows
    CHANNEL_CLOSED = "channel_closed"  # the channel was retired
    # Not decisions on a scan, but events a gate reports about a decision it made:
    ANNULLED = "annulled"  # admitted, but nobody passed in time: the entry is taken back
    EXIT = "exit"  # a passage in the exit direction
    EMERGENCY = "emergency"  # scanned during an emergency release: journalled, never admitted

    @property
    def admitted(self) -> bool:
        return self is Reason.ADMITTED

    @property
    def text_en(self) -> str:
        return _TEXT[self][0]

    @property
    def text_zh(self) -> str:
        return _TEXT[self][1]


_TEXT: dict[Reason, tuple[str, str]] = {
    Reason.ADMITTED: ("Welcome. Please pass.", "验票通过，请通行"),
    Reason.MALFORMED: ("Code not readable. Please scan the ticket QR code again.", "无法识别，请重新扫描票面二维码"),
    Reason.FORGED: ("Invalid ticket. Please go to the box office.", "无效票，请到售票处咨询"),
    Reason.UNKNOWN: ("Ticket not found for this entrance. Please ask staff.", "本入口无此票，请咨询工作人员"),
    Reason.REVOKED: ("Ticket refunded or cancelled. Please go to the box office.", "票已退或已作废，请到售票处咨询"),
    Reason.WRONG_PERFORMANCE: ("Ticket is for another performance.", "非本场次门票"),
    Reason.WRONG_CHANNEL: ("Please use the entrance for your ticket type.", "请走对应票类的检票通道"),
    Reason.TOO_EARLY: ("Doors are not open yet. Please wait.", "尚未检票，请稍候"),
    Reason.TOO_LATE: ("This performance has ended.", "本场演出已结束"),
    Reason.ALREADY_USED: ("Ticket already used.", "此票已检"),
    Reason.DAILY_LIMIT: ("Already entered today.", "今日已入场"),
    Reason.COOLDOWN: ("Entered a moment ago. Please wait.", "刚刚已入场，请稍后再试"),
    Reason.NO_REENTRY: ("Re-entry is not allowed after leaving.", "离场后不可再次入场"),
    Reason.STILL_INSIDE: ("Ticket is still inside. Please exit first.", "此票尚未离场，请先出场"),
    Reason.LATECOMER: ("The performance has started. Latecomers please ask staff.",
                       "演出已开始，迟到观众请咨询工作人员"),
    Reason.NOT_TODAY: ("Not valid today.", "今日不可使用"),
    Reason.CHANNEL_CLOSED: ("This entrance is closed. Please use another entrance.", "本通道已关闭，请走其他通道"),
    Reason.ANNULLED: ("Nobody passed in time; please scan again.", "未在规定时间内通行，请重新刷票"),
    Reason.EMERGENCY: ("Emergency: gates are open and checking is stopped. Please leave calmly.",
                       "紧急疏散：闸机已打开，停止检票，请有序离场"),
    Reason.EXIT: ("Goodbye. Please keep your ticket to come back in.", "再见，再次入场请保留门票"),
}
